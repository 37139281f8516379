"""One running emulator's parts (:class:`Emulator`): its config, the account's store, the journal,
the fault plan, what happens to accepted events (:mod:`.processing`) and the rate windows. The app keeps it as ``app.state.emulator``; the gate and the
routes reach it through their :class:`~kl_sync.emulator.gate.Call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kl_sync.emulator.config import EmulatorConfig
from kl_sync.emulator.faults import FaultPlan
from kl_sync.emulator.journal import Journal
from kl_sync.emulator.limits import RateWindows
from kl_sync.emulator.processing import EventProcessing
from kl_sync.emulator.storage import Store


@dataclass
class Emulator:
    data_dir: Path
    config: EmulatorConfig
    store: Store
    journal: Journal
    faults: FaultPlan
    processing: EventProcessing
    rate_windows: RateWindows | None  # None: rate limits off

    @classmethod
    def open(cls, data_dir: str | Path, config: EmulatorConfig) -> Emulator:
        """Over ``data_dir`` (created if missing; an account already there is kept)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            data_dir=data_dir,
            config=config,
            store=Store(data_dir / "emulator.db"),
            journal=Journal(data_dir / "journal.jsonl"),
            faults=FaultPlan(config.faults),
            processing=EventProcessing(config.processing_delay, config.lose, config.lose_seed),
            rate_windows=RateWindows(config.rate_scale) if config.rate_limits == "real" else None,
        )

    def close(self) -> None:
        self.store.close()
        self.journal.close()

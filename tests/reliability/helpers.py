"""What the reliability tests share: a realistic store, a clean reference run, the sync as a real
subprocess, and reading back what the emulator accepted."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.settings import load_settings
from kl_sync.store.generate import generate_store

END = dt.datetime(2026, 11, 1, 12, 0)
REPO = Path(__file__).resolve().parents[2]
BULK_EVENTS = "/api/event-bulk-create-jobs"


def make_store(url: str, *, customers: int, seed: int, years: float = 1.0) -> str:
    generate_store(make_engine(url, sqlite_wal=False), customers_count=customers, seed=seed, end=END, years=years)
    return url


def settings_for(store_url: str, state_url: str, base_url: str, api_key: str, **extra: Any):
    return load_settings(store_url=store_url, state_url=state_url, klaviyo_base_url=base_url,
                         klaviyo_api_key=api_key, **extra)


def event_facts(events: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """unique_id -> what a person would check: metric, profile, time, value."""
    return {e["unique_id"]: (e["metric"], e["profile_email"], e["time"], e["value"]) for e in events}


def reference_run(store_url: str, tmp_path: Path) -> dict[str, Any]:
    """A clean, uninterrupted run of the same store in this process: what every other run must reach."""
    from kl_sync.app.run import run_sync

    with running_emulator(tmp_path / "reference-emulator", api_keys=("pk_reference",)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'reference-state.db'}", emu.base_url, "pk_reference")
        counts = run_sync(settings, from_start=True)
        return {
            "counts": counts,
            "events": event_facts(emu.events()),
            "suppressions": {s["email"] for s in emu.suppressions()},
            "dead_letters": dead_letter_keys(settings.state_url),
        }


def dead_letter_keys(state_url: str) -> dict[str, str]:
    from kl_sync.state.tables import dead_letters

    with make_engine(state_url).connect() as conn:
        return {r.key: r.step for r in conn.execute(select(dead_letters.c.key, dead_letters.c.step))}


def child_env(**settings: str) -> dict[str, str]:
    """The environment of a ``kl-sync`` child process: this one's, minus every kl-sync setting the
    developer may have, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KL_SYNC_", "KLAVIYO_")) or k.startswith("KL_SYNC_TEST_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(settings)
    return env


def kl_sync_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kl_sync", *args]


def run_kl_sync(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(kl_sync_command(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def accepted_unique_ids(journal: list[dict[str, Any]]) -> Counter[str]:
    """How many accepted (2xx) bulk-create requests carried each unique_id. More than one means the
    same event was sent again (a retry, a re-run after a kill); Klaviyo keeps one of them."""
    seen: Counter[str] = Counter()
    for line in journal:
        if line["path"] != BULK_EVENTS or line.get("status") is None or not 200 <= line["status"] < 300:
            continue
        for entry in line["body"]["data"]["attributes"]["events-bulk-create"]["data"]:
            for event in entry["attributes"]["events"]["data"]:
                seen[event["attributes"]["unique_id"]] += 1
    return seen


@contextmanager
def collector_thresholds() -> Iterator[list[int]]:
    """The garbage collector's first threshold at each collection while the block runs, as the
    collector itself reports it (``gc.callbacks``)."""
    import gc

    during: list[int] = []

    def note(phase: str, _info: dict) -> None:
        if phase == "start":
            during.append(gc.get_threshold()[0])

    gc.callbacks.append(note)
    try:
        yield during
    finally:
        gc.callbacks.remove(note)

"""``make demo``: the whole job on the embedded defaults, with nothing configured.

Everything lives under ``.kl_sync/demo/``: the generated store (``store.db``), kl-sync's state
(``state.db``). Running it again reuses them, so a second run finds nothing new to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from kl_sync.db import make_engine
from kl_sync.settings import DEMO_DIR
from kl_sync.state.migrate import open_state
from kl_sync.state.store import outbox_counts
from kl_sync.store.contract import TABLES
from kl_sync.store.generate import generate_store


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'store.db'}"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    @property
    def emulator_dir(self) -> Path:
        return self.root / "emulator"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def prepare_store(paths: DemoPaths, *, customers: int, seed: int, console: Console) -> None:
    store_file = paths.root / "store.db"
    if store_file.exists():
        console.print(f"store: reusing {store_file}")
        return
    paths.root.mkdir(parents=True, exist_ok=True)
    counts = generate_store(make_engine(paths.store_url, sqlite_wal=False), customers_count=customers, seed=seed)
    console.print(
        f"store: generated {counts.customers} customers, {counts.orders} orders, "
        f"{counts.order_items} order items and {counts.system_log} log rows into {store_file}"
    )


def run_demo(*, customers: int = 300, seed: int = 1, fresh: bool = False, root: Path = DEMO_DIR) -> int:
    console = Console()
    paths = DemoPaths(root)
    if fresh:
        for name in ("store.db", "state.db"):
            _remove_sqlite(paths.root / name)
    prepare_store(paths, customers=customers, seed=seed, console=console)
    state = open_state(paths.state_url)
    console.print(f"state: {paths.root / 'state.db'} migrated to head")
    store = make_engine(paths.store_url, sqlite_wal=False)
    with store.connect() as conn:
        for table in TABLES:
            count = conn.execute(select(func.count()).select_from(table)).scalar_one()
            console.print(f"  {table.name:<12} {count:>8,} rows")
    with state.connect() as conn:
        counts = outbox_counts(conn)
    console.print(f"outbox: {sum(r['rows'] for r in counts)} rows")
    return 0

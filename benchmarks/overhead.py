"""Benchmark 5: an incremental sync with nothing new, as the scheduled Prefect flow runs it, against
a no-op Prefect flow in the same process (same Prefect server, same settings, both warmed up).

``python -m benchmarks.overhead`` is the child. It runs in a scratch working directory, so the
default emulator and demo files land there; the Prefect home is kept between benchmark runs
(``.kl_sync/bench/prefect``) because a fresh one spends ~10 s migrating its database, which is
Prefect's start-up, not a sync's cost.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks.harness import ROOT, WORK_DIR, BenchResult, Figure, fresh_dir, median, run_child, sqlite_url


def child(repeat: int) -> dict[str, object]:
    from kl_sync.settings import prefect_defaults

    prefect_defaults()
    from prefect import flow

    from benchmarks.stores import fill_store
    from flows.sync import sync
    from kl_sync.db import make_engine

    store = make_engine(os.environ["KL_SYNC_STORE_URL"], sqlite_wal=False)
    fill_store(store, customers=500, log_rows=5_000, orders=1_000)

    @flow(name="kl-sync-benchmark-noop")
    def noop() -> dict[str, int]:
        return {}

    noop()
    first = time.perf_counter()
    counts = sync()  # the initial sync: everything is new (and GX gets imported)
    initial = time.perf_counter() - first
    noop_times, sync_times, queued = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        noop()
        noop_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = sync()
        sync_times.append(time.perf_counter() - start)
        queued.append(sum(again.get(step, {}).get("queued", 0) for step in ("parse", "orders", "suppress")))
    return {"noop_seconds": noop_times, "sync_seconds": sync_times, "initial_sync_seconds": initial,
            "initial_sent": counts["send"]["sent_events"], "queued_again": queued}


def run(repeat: int = 3) -> BenchResult:
    folder = fresh_dir("overhead")
    env = {
        "KL_SYNC_STORE_URL": sqlite_url(folder / "store.db"),
        "KL_SYNC_STATE_URL": sqlite_url(folder / "state.db"),
        "PREFECT_HOME": str(WORK_DIR / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    figures = run_child("benchmarks.overhead", str(repeat), env=env, cwd=folder)
    if any(figures["queued_again"]):
        raise RuntimeError(f"the incremental syncs queued rows: {figures['queued_again']}")
    noop, sync = median(figures["noop_seconds"]), median(figures["sync_seconds"])
    result = BenchResult("overhead")
    result.figures += [
        Figure("5 overhead", "incremental sync, nothing new, minus no-op flow", sync - noop, "s", ("<=", 2.0),
               "Prefect flow, SQLite, default emulator", repeat, f"sync {sync:.2f} s, no-op flow {noop:.2f} s (medians)"),
    ]
    result.details = figures
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(child(int(sys.argv[1]))))

"""Benchmark 4: peak RSS of an initial sync (parse, orders, suppress) of N log rows, in a fresh
process per size, so each figure is that process's own peak.

``python -m benchmarks.memory <rows>`` is the child: it fills a store, runs the store-reading steps
from the start, and prints its peak RSS as JSON. The send step is left out: it holds one claimed
batch at a time (``send_batch_size`` rows), whatever the outbox's size.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.harness import BenchResult, Figure, fresh_dir, peak_rss_mb, run_child, sqlite_url
from benchmarks.stores import fill_store


def child(rows: int) -> dict[str, float]:
    from kl_sync.db import make_engine
    from kl_sync.settings import load_settings
    from kl_sync.state.migrate import open_state
    from kl_sync.steps.orders import process_orders
    from kl_sync.steps.parse import parse_log
    from kl_sync.steps.suppress import suppress_touched

    folder = fresh_dir(f"memory-{rows}")
    store_url = sqlite_url(folder / "store.db")
    store = make_engine(store_url, sqlite_wal=False)
    fill_store(store, customers=max(rows // 20, 100), log_rows=rows, orders=rows // 20)
    before = peak_rss_mb()
    state_url = sqlite_url(folder / "state.db")
    state = open_state(state_url)
    settings = load_settings(store_url=store_url, state_url=state_url)
    start = time.perf_counter()
    parse_log(store, state, settings, from_start=True)
    process_orders(store, state, settings, from_start=True)
    suppress_touched(store, state, settings)
    return {"rows": rows, "peak_rss_mb": peak_rss_mb(), "before_sync_mb": before,
            "seconds": time.perf_counter() - start}


def run(sizes: tuple[int, ...] = (250_000, 500_000, 1_000_000)) -> BenchResult:
    result = BenchResult("memory")
    runs = [run_child("benchmarks.memory", str(rows)) for rows in sizes]
    for figures in runs:
        rows = int(figures["rows"])
        result.figures.append(
            Figure("4 memory", f"peak RSS, initial sync of {rows:,} log rows", figures["peak_rss_mb"], "MB",
                   ("<=", 400), f"{rows:,} log rows + {rows // 20:,} orders", 1,
                   f"{figures['before_sync_mb']:.0f} MB before the sync; sync took {figures['seconds']:.0f} s")
        )
    result.details = {"runs": runs}
    return result


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]))))

"""``python -m benchmarks`` (``make bench``): run every benchmark with its same-run baseline, print
the table, write ``benchmarks/results/latest.json``.

Sizes default to what fits ``make bench`` in about ten minutes on a shared 2-core machine; each can
be raised (``--e2e-scale 4``, ``--parse-rows 1000000`` …). The table's ``size`` column always says
what was run. ``--only send,parse`` runs a subset; the send step alone (``send``) and GX's share of it
(``validation``) run only when named, as the end-to-end sync (``e2e``) covers what a user runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable

from benchmarks import harness

BENCHMARKS = ("e2e", "send", "parse", "orders", "validation", "verify")
#: What ``make bench`` runs when not told ``--only``.
DEFAULT = ("e2e", "parse", "orders", "verify")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DEFAULT),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)} (default {','.join(DEFAULT)})")
    parser.add_argument("--e2e-scale", type=float, default=1.0,
                        help="the end-to-end store as a multiple of the issue's (1,800 customers, 217,500 events, "
                             "218 bulk requests: floor 66 s); default 1")
    parser.add_argument("--e2e-repeat", type=int, default=3,
                        help="initial syncs per latency, the median quoted (default 3)")
    parser.add_argument("--e2e-latencies", default="0,0.25",
                        help="emulator round trips (seconds) the end-to-end sync runs at (default 0,0.25)")
    parser.add_argument("--e2e-memory-scales", default="0.25",
                        help="other store scales run once more for peak memory (default 0.25)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each short benchmark; the median is quoted (default 3)")
    parser.add_argument("--send-events", type=int, default=200_000, help="events drained in benchmark 1 (issue: 200k)")
    parser.add_argument("--send-scale", type=float, default=1.2,
                        help="rate-window scale for benchmark 1, emulator and client alike (default 1.2: floor ≈ 53 s)")
    parser.add_argument("--send-batch-size", type=int, default=20_000,
                        help="outbox rows claimed per send batch in benchmarks 1 and 6 (default 20k: GX costs "
                             "~0.25 s per call whatever its size; 0 = the send_batch_size setting)")
    parser.add_argument("--send-repeat", type=int, default=3,
                        help="runs of benchmark 1's bulk send, about a minute each; the median is quoted (default 3)")
    parser.add_argument("--baseline-events", type=int, default=2_000,
                        help="events sent one request each for benchmark 1's baseline, extrapolated to N (default 2k)")
    parser.add_argument("--parse-rows", type=int, default=150_000,
                        help="system_log rows for benchmark 2 (default 150k, so three runs fit the 10 minutes; issue: 1M)")
    parser.add_argument("--orders", type=int, default=30_000,
                        help="orders for benchmark 3 (default 30k, as for --parse-rows; issue: 200k)")
    parser.add_argument("--step-repeat", type=int, default=3,
                        help="runs of the parse and orders steps; the median is quoted (default 3; the raw statements alternate with them)")
    parser.add_argument("--validation-events", type=int, default=100_000, help="events of benchmark 6 (issue: 100k)")
    parser.add_argument("--validation-batches", default="",
                        help="send batch sizes benchmark 6 compares (default: the configured send_batch_size)")
    parser.add_argument("--verify-events", type=int, default=30_000,
                        help="sent events read back by benchmark 7's verify step (default 30k)")
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip PostgreSQL in benchmarks 2 and 3 even when KL_SYNC_BENCH_POSTGRES_URL is set")
    parser.add_argument("--postgres-rows", type=int, default=50_000,
                        help="log rows / 2× orders for the PostgreSQL runs of benchmarks 2 and 3 (default 50k)")
    parser.add_argument("--json", default=None,
                        help="where to write the figures (default: results/latest.json for a whole run, "
                             "results/partial.json for --only, so a subset never replaces the whole run's figures)")
    return parser.parse_args(argv)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2

    from benchmarks import e2e, send, steps, validation, verify
    from kl_sync.settings import load_settings

    send_batch = args.send_batch_size or load_settings().send_batch_size
    batch_sizes = tuple(int(b) for b in args.validation_batches.split(",") if b) or (send_batch,)
    postgres = not args.no_postgres
    runners: dict[str, Callable[[], harness.BenchResult]] = {
        "e2e": lambda: e2e.run(args.e2e_scale, latencies=_floats(args.e2e_latencies), repeat=args.e2e_repeat,
                               memory_scales=_floats(args.e2e_memory_scales)),
        "send": lambda: send.run(args.send_events, scale=args.send_scale, baseline_events=args.baseline_events,
                                 batch_size=send_batch, repeat=args.send_repeat),
        "parse": lambda: steps.run_parse(args.parse_rows, repeat=args.step_repeat, postgres=postgres,
                                         postgres_rows=args.postgres_rows),
        "orders": lambda: steps.run_orders(args.orders, repeat=args.step_repeat, postgres=postgres,
                                           postgres_orders=args.postgres_rows // 2),
        "validation": lambda: validation.run(args.validation_events, batch_sizes),
        "verify": lambda: verify.run(args.verify_events, repeat=args.repeat),
    }
    started = dt.datetime.now(dt.UTC)
    harness.MACHINE_SPEED["python_loop_s"] = harness.python_speed()  # before the benchmarks load the cores
    clock = time.perf_counter()
    results = []
    try:
        for name in BENCHMARKS:
            if name not in chosen:
                continue
            print(f"[{time.perf_counter() - clock:6.0f} s] {name} …", file=sys.stderr, flush=True)
            results.append(runners[name]())
    finally:
        harness.clean_scratch()
    elapsed = time.perf_counter() - clock
    print(harness.text_table(results))
    whole = set(chosen) == set(DEFAULT)
    target = harness.Path(args.json) if args.json else harness.RESULTS if whole else harness.RESULTS.with_name("partial.json")
    path = harness.write_json(results, path=target, started=started.isoformat(timespec="seconds"),
                              elapsed=elapsed, arguments=vars(args))
    print(f"\n{len(results)} benchmark(s) in {elapsed:.0f} s; figures written to {path}")
    if path.resolve() == harness.RESULTS.resolve() and whole:
        # Only a whole run at the default output replaces the README's table.
        harness.update_readme(results, started=started.isoformat(timespec="seconds"), elapsed=elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

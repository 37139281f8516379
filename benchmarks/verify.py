"""Benchmark 7: the verify step reading N sent events back from the emulator (Klaviyo's windows on),
against the GET endpoint's own floor and against bare paging of the same events.

Set-up (not timed): N events queued as the parse step queues them (six metrics, a minute apart) are
sent to an emulator with rate limits off; the state database is copied, so every run verifies the
same N sent rows. Each run then restarts the emulator over that account with Klaviyo's windows on
and runs :func:`kl_sync.steps.verify.verify_outbox` (everything due, nothing missing) through a client
whose limiter keeps ``get_events``'s 350/s and 3,500/min windows.

What is compared, all in the same run:

- **requests made ÷ needed**: verification needs one ``GET /api/metrics`` page and, per metric,
  ``ceil(events / 1,000)`` pages of ``GET /api/events`` (the most a page holds); more would mean it
  reads what it need not.
- **the floor**: the least time the ``get_events`` windows allow for those requests (the send
  benchmark's formula, :func:`benchmarks.send.requests_floor_seconds`), and the events per second
  the steady window sustains over a long run (1,000 × 3,500 a minute = 58,333 events/s).
- **bare paging**: the same pages read with the same client and nothing else (no state, no matching),
  the cost of the reading alone on this machine; run after each verification, medians compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import time
from collections import Counter
from typing import Any

from benchmarks.harness import BENCH_KEY, BenchResult, Figure, emulator_process, fresh_dir, median, sqlite_url
from benchmarks.outbox import bench_event, queue_events
from benchmarks.send import requests_floor_seconds
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, WindowRateLimiter
from kl_sync.klaviyo.reads import iter_events, metric_ids_by_name
from kl_sync.state.migrate import open_state
from kl_sync.steps.send import send_outbox
from kl_sync.steps.verify import verify_outbox

GET_EVENTS = ENDPOINT_LIMITS["get_events"]
PAGE = GET_EVENTS.max_items or 1000
#: Events per second the steady window of get_events sustains: a full page per request.
SUSTAINED = PAGE * GET_EVENTS.steady.limit / GET_EVENTS.steady.seconds


def _prepare(events: int) -> tuple[Any, Counter[str]]:
    work = fresh_dir("verify")
    state_url = sqlite_url(work / "sent.db")
    state = open_state(state_url)
    queue_events(state, events)
    with emulator_process(work / "klaviyo") as base_url, KlaviyoClient(BENCH_KEY, base_url) as client:
        result = send_outbox(state, client)
    if result.details["sent_events"] != events:
        raise RuntimeError(f"sent {result.details['sent_events']} of {events} events")
    state.dispose()
    return work, Counter(bench_event(i)["metric"] for i in range(events))


def _verify_once(work: Any, number: int) -> dict[str, Any]:
    copy = work / f"run{number}.db"
    shutil.copy(work / "sent.db", copy)
    state = open_state(sqlite_url(copy))
    with emulator_process(work / "klaviyo", rate_limits="real") as base_url, \
            KlaviyoClient(BENCH_KEY, base_url, limiter=WindowRateLimiter()) as client:
        start = time.perf_counter()
        result = verify_outbox(state, client, verify_after=dt.timedelta(0), grace=dt.timedelta(days=1), max_sends=3)
        elapsed = time.perf_counter() - start
        stats = client.stats.as_dict()
    state.dispose()
    return {"elapsed": elapsed, "verified": result.details["verified"], "missing": result.details["missing"],
            "requests": stats["requests"], "by_endpoint": stats["by_endpoint"], "retries": stats["retries"]}


def _bare_paging(work: Any) -> dict[str, Any]:
    """Every page of every metric's events, read and decoded, nothing else."""
    with emulator_process(work / "klaviyo", rate_limits="real") as base_url, \
            KlaviyoClient(BENCH_KEY, base_url, limiter=WindowRateLimiter()) as client:
        start = time.perf_counter()
        read = sum(1 for ids in metric_ids_by_name(client).values() for metric_id in ids
                   for _ in iter_events(client, metric_id=metric_id, include="profile",
                                        fields={"event": "datetime,event_properties", "profile": "email"}))
        elapsed = time.perf_counter() - start
        requests = client.stats.requests
    return {"elapsed": elapsed, "events": read, "requests": requests}


def run(events: int = 100_000, *, repeat: int = 3) -> BenchResult:
    work, per_metric = _prepare(events)
    runs, bares = [], []
    for number in range(repeat):  # alternating, so both see the same load on a shared machine
        runs.append(_verify_once(work, number))
        bares.append(_bare_paging(work))
    shutil.rmtree(work, ignore_errors=True)
    for one in runs:
        if one["verified"] != events:
            raise RuntimeError(f"verified {one['verified']} of {events} events: {one}")
    chosen = sorted(runs, key=lambda r: r["elapsed"])[len(runs) // 2]
    bare = sorted(bares, key=lambda r: r["elapsed"])[len(bares) // 2]
    needed_pages = sum(math.ceil(n / PAGE) for n in per_metric.values())
    needed = needed_pages + 1  # and one page of GET /api/metrics
    floor = requests_floor_seconds(needed_pages, endpoint="get_events", scale=1.0)
    rate = events / chosen["elapsed"]
    size = f"{events:,} events, {len(per_metric)} metrics"
    result = BenchResult("verify")
    result.figures += [
        Figure("7 verify", "events verified/s (kl-sync)", rate, "events/s", None, size, repeat,
               f"median {chosen['elapsed']:.1f} s (runs: {', '.join(format(r['elapsed'], '.1f') for r in runs)} s)"),
        Figure("7 verify", "GET requests made ÷ needed", chosen["requests"] / needed, "x", ("<=", 1.0), size, repeat,
               f"{chosen['requests']} made: {chosen['by_endpoint']}; needed {needed_pages} pages of 1,000 + 1 metrics page"),
        Figure("7 verify", "GET windows' floor for those requests", floor, "s", None, size, 1,
               f"{needed_pages} requests fit {math.ceil(needed_pages / GET_EVENTS.burst.limit)} burst window(s) of 350; "
               "Klaviyo's limits are not what bounds verification at this size"),
        Figure("7 verify", "events/s ÷ the windows' sustained ceiling", rate / SUSTAINED, "x", None, size, repeat,
               f"ceiling {SUSTAINED:,.0f} events/s (3,500 pages of 1,000 a minute)"),
        Figure("7 verify", "elapsed ÷ bare paging of the same events", chosen["elapsed"] / bare["elapsed"], "x", None,
               size, repeat, f"bare paging (reading alone, no state, no matching): median {bare['elapsed']:.1f} s "
                             f"for {bare['events']:,} events in {bare['requests']} requests "
                             f"(runs: {', '.join(format(r['elapsed'], '.1f') for r in bares)} s)"),
    ]
    result.details = {"runs": runs, "bare_paging": bares, "needed_requests": needed, "floor_seconds": floor,
                      "per_metric": dict(per_metric), "events": events}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for figure in run(args.events, repeat=args.repeat).figures:
        print(figure)


if __name__ == "__main__":
    main()

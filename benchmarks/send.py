"""Benchmark 1: drain N queued events through the emulator with Klaviyo's windows on, against the
rate-limit floor, and against one request per event.

The floor. A client that keeps every window of an endpoint (burst: B requests per 1 s, steady: M per
60 s, both divided by the scale S) can send its k-th request (counting from 0) no earlier than

    t_k = (k // M) · 60/S + ((k mod M) // B) · 1/S

after its first: each full steady window holds M requests, and inside a window the requests go
in bursts of B, one burst window apart. N events at E per request take R = ceil(N / E) requests, so
the floor is t_(R-1) (plus one request's latency, which we leave out: the floor is a lower bound).
For bulk event creation E = 1,000, B = 10, M = 150; for one request per event (create_event) E = 1,
B = 350, M = 3,500.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from benchmarks.harness import BENCH_KEY, BenchResult, Figure, emulator_process, fresh_dir, sqlite_url
from benchmarks.outbox import bench_event, queue_events
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.events import build_event_body
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, WindowRateLimiter
from kl_sync.kinds import metric_names
from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.steps.send import quality_validator, send_outbox


def floor_seconds(events: int, *, endpoint: str, scale: float) -> float:
    """The least time (from the first request to the last) the scaled windows allow for ``events``."""
    per_request = ENDPOINT_LIMITS[endpoint].max_items or 1
    return requests_floor_seconds(math.ceil(events / per_request), endpoint=endpoint, scale=scale)


def requests_floor_seconds(requests: int, *, endpoint: str, scale: float) -> float:
    """The least time (from the first request to the last) the scaled windows allow for ``requests``."""
    limits = ENDPOINT_LIMITS[endpoint]
    k = max(requests - 1, 0)
    steady, burst = limits.steady, limits.burst
    return (k // steady.limit) * steady.seconds / scale + ((k % steady.limit) // burst.limit) * burst.seconds / scale


def _warm_validator(validate: Any) -> None:
    """Import GX and build its context before the clock starts (benchmark 6 measures that cost)."""
    validate("log_event", [("warm:0", bench_event(0))])


def run_bulk(events: int, scale: float, batch_size: int) -> dict[str, Any]:
    work = fresh_dir("send")
    state_url = sqlite_url(work / "state.db")
    state = open_state(state_url)
    queue_events(state, events)
    settings = load_settings(state_url=state_url)
    validate = quality_validator(metric_names(settings))
    _warm_validator(validate)
    with emulator_process(work / "klaviyo", rate_limits="real", rate_scale=scale) as base_url:
        limiter = WindowRateLimiter(scale=scale)
        sent_at: list[float] = []
        with KlaviyoClient(BENCH_KEY, base_url, limiter=limiter, on_request=lambda r: sent_at.append(r.started_at)) as client:
            begun = time.time()
            start = time.perf_counter()
            result = send_outbox(state, client, batch_size=batch_size, validate=validate, retries=settings.retry.outbox)
            elapsed = time.perf_counter() - start
            stats = client.stats.as_dict()
    sent = result.details["sent_events"]
    if sent != events:
        raise RuntimeError(f"sent {sent} of {events} events: {json.dumps(result.as_dict(), default=str)[:2000]}")
    floor = floor_seconds(events, endpoint="bulk_create_events", scale=scale)
    writes = stats["by_endpoint"].get("bulk_create_events", 0)
    # When each request went out, from the start: shows where the time went (the steady window's
    # wait, then the last burst-paced requests).
    timeline = [round(t - begun, 3) for t in sent_at]
    window = 60 / scale
    after_window = [t for t in timeline if t >= window]
    return {"elapsed": elapsed, "floor": floor, "requests": stats["requests"], "write_requests": writes,
            "first_request_at": timeline[0] if timeline else None, "requests_in_first_window": len(timeline) - len(after_window),
            "last_of_first_window_at": max((t for t in timeline if t < window), default=None),
            "first_after_window_at": after_window[0] if after_window else None, "request_times": timeline,
            "retries": stats["retries"], "by_status": stats["by_status"], "sent": sent}


def run_one_per_event(events: int, scale: float) -> dict[str, Any]:
    """The seed's way: POST /api/events once per event (create_event), sequentially."""
    work = fresh_dir("send-single")
    with emulator_process(work / "klaviyo", rate_limits="real", rate_scale=scale) as base_url:
        limiter = WindowRateLimiter(scale=scale)
        endpoint = ENDPOINT_LIMITS["create_event"]
        with KlaviyoClient(BENCH_KEY, base_url, limiter=limiter) as client:
            bodies = [build_event_body(bench_event(i)) for i in range(events)]
            start = time.perf_counter()
            for body in bodies:
                client.post(endpoint.path, body, endpoint=endpoint.operation_id)
            elapsed = time.perf_counter() - start
            stats = client.stats.as_dict()
    return {"elapsed": elapsed, "requests": stats["requests"], "retries": stats["retries"],
            "floor": floor_seconds(events, endpoint="create_event", scale=scale)}


def run(events: int = 200_000, *, scale: float = 1.2, baseline_events: int = 2_000, batch_size: int | None = None,
        repeat: int = 3) -> BenchResult:
    batch_size = batch_size or load_settings().send_batch_size
    runs = [run_bulk(events, scale, batch_size) for _ in range(repeat)]
    # The run with the median elapsed time stands for all of them; every run is in the JSON.
    bulk = sorted(runs, key=lambda r: r["elapsed"])[len(runs) // 2]
    single = run_one_per_event(baseline_events, scale)
    # The baseline at the same N: no faster than its own measured pace, nor than its floor.
    single_rate = baseline_events / single["elapsed"]
    single_floor_n = floor_seconds(events, endpoint="create_event", scale=scale)
    single_at_n = max(events / single_rate, single_floor_n)
    result = BenchResult("send")
    size = f"{events:,} events, scale {scale:g}"
    ratio = bulk["elapsed"] / bulk["floor"] if bulk["floor"] else float("inf")
    per_10k = bulk["write_requests"] / events * 10_000
    ratios = ", ".join(f"{r['elapsed'] / r['floor']:.2f}" for r in runs)
    result.figures += [
        Figure("1 send", "elapsed ÷ rate-limit floor", ratio, "x", ("<=", 1.10), size, repeat,
               f"median {bulk['elapsed']:.1f} s vs floor {bulk['floor']:.1f} s (runs: {ratios}×); "
               f"{sum(r['retries'] for r in runs)} retries in all"),
        Figure("1 send", "HTTP write requests per 10k events", per_10k, "", ("<=", 12), size, repeat,
               f"{bulk['write_requests']} bulk-create requests"),
        Figure("1 send", "events/s sent (kl-sync, bulk)", events / bulk["elapsed"], "events/s", None, size, repeat),
        Figure("1 send", "baseline: one request per event, time for N", single_at_n, "s", None, size, 1,
               f"measured {baseline_events:,} events in {single['elapsed']:.1f} s "
               f"({single_rate:,.0f}/s), extrapolated to N; its floor at N is {single_floor_n:.0f} s"),
        Figure("1 send", "baseline ÷ kl-sync elapsed", single_at_n / bulk["elapsed"], "x", None, size, 1,
               "how many times faster bulk is than one-per-event"),
    ]
    result.details = {"bulk": bulk, "bulk_runs": [{k: v for k, v in r.items() if k != "request_times"} for r in runs],
                      "one_per_event": {**single, "events": baseline_events,
                                                       "extrapolated_seconds_at_n": single_at_n},
                      "scale": scale, "events": events, "batch_size": batch_size}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--scale", type=float, default=1.2)
    parser.add_argument("--baseline-events", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run(args.events, scale=args.scale, baseline_events=args.baseline_events, batch_size=args.batch_size,
                 repeat=args.repeat)
    for figure in result.figures:
        print(figure)


if __name__ == "__main__":
    main()

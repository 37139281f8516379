"""Benchmark 6: GX validation time as a share of the send step, for N queued events.

``python -m benchmarks.validation <events> <batch_size>`` is the child, a fresh interpreter so the
one-off cost of importing Great Expectations and building its context is measured on its own (the
first validation of one row), apart from the per-batch cost inside the send. The send runs against
the emulator with Klaviyo's real windows (scale 1), as production would.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.harness import BENCH_KEY, BenchResult, Figure, emulator_process, fresh_dir, run_child, sqlite_url


def child(events: int, batch_size: int) -> dict[str, Any]:
    from benchmarks.outbox import bench_event, queue_events
    from kl_sync.klaviyo.client import KlaviyoClient
    from kl_sync.klaviyo.limits import WindowRateLimiter
    from kl_sync.kinds import metric_names
    from kl_sync.settings import load_settings
    from kl_sync.state.migrate import open_state
    from kl_sync.steps.send import quality_validator, send_outbox

    folder = fresh_dir("validation")
    state_url = sqlite_url(folder / "state.db")
    state = open_state(state_url)
    queue_events(state, events)
    validate = quality_validator(metric_names(load_settings(state_url=state_url)))

    start = time.perf_counter()
    validate("log_event", [("warm:0", bench_event(0))])
    gx_setup = time.perf_counter() - start

    calls: list[float] = []
    cpu: list[float] = []
    decoding: list[float] = []

    def decoded_as_read(rows: Any, spent: list[float]) -> Any:
        """The rows as the validator reads them, the CPU of producing each (the sender decodes each
        stored payload as it is read) added to ``spent``: decoding is not validation."""
        begin = time.thread_time()
        for row in rows:
            spent[0] += time.thread_time() - begin
            yield row
            begin = time.thread_time()
        spent[0] += time.thread_time() - begin

    # The sender validates on its preparing thread while the main thread sends, so wall time inside a
    # call includes waiting for the GIL; the thread's CPU time is the validation's own cost, less the
    # decoding of the payloads it reads.
    def timed_validate(kind: str, rows: Any) -> Any:
        begin, begin_cpu, spent = time.perf_counter(), time.thread_time(), [0.0]
        try:
            return validate(kind, decoded_as_read(rows, spent))
        finally:
            calls.append(time.perf_counter() - begin)
            cpu.append(time.thread_time() - begin_cpu - spent[0])
            decoding.append(spent[0])

    with emulator_process(folder / "klaviyo", rate_limits="real", rate_scale=1.0) as base_url:
        with KlaviyoClient(BENCH_KEY, base_url, limiter=WindowRateLimiter()) as client:
            start = time.perf_counter()
            result = send_outbox(state, client, batch_size=batch_size, validate=timed_validate)
            send_seconds = time.perf_counter() - start
    if result.details["sent_events"] != events:
        raise RuntimeError(f"sent {result.details['sent_events']} of {events}")
    return {"events": events, "batch_size": batch_size, "gx_setup_seconds": gx_setup, "send_seconds": send_seconds,
            "validate_seconds": sum(calls), "validate_cpu_seconds": sum(cpu), "validate_calls": len(calls),
            "decode_cpu_seconds": sum(decoding),
            "per_call_seconds": calls, "per_call_cpu_seconds": cpu}


def run(events: int = 100_000, batch_sizes: tuple[int, ...] = (5_000,)) -> BenchResult:
    result = BenchResult("validation")
    for batch_size in batch_sizes:
        figures = run_child("benchmarks.validation", str(events), str(batch_size))
        share = figures["validate_cpu_seconds"] / figures["send_seconds"] * 100
        size = f"{events:,} events, batches of {batch_size:,}"
        per_call = figures["validate_cpu_seconds"] / max(figures["validate_calls"], 1)
        result.figures += [
            Figure("6 validation", f"GX share of the send step (batch {batch_size:,})", share, "%", ("<=", 20), size, 1,
                   f"{figures['validate_cpu_seconds']:.1f} s CPU of {figures['send_seconds']:.1f} s; "
                   f"{figures['validate_calls']} calls, {per_call:.2f} s CPU each "
                   f"({figures['validate_seconds']:.1f} s wall on the preparing thread, decoding the payloads read "
                   f"{figures['decode_cpu_seconds']:.1f} s CPU more, not counted)"),
            Figure("6 validation", "GX import and context, once per process", figures["gx_setup_seconds"], "s", None,
                   size, 1, "first validation of one row in a fresh interpreter"),
        ]
        result.details[f"batch_{batch_size}"] = figures
    return result


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), int(sys.argv[2]))))

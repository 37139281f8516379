"""A whole sync run in this process, without Prefect (``kl-sync sync --no-prefect``, cron, scripts,
tests): the pipeline, given the client :mod:`kl_sync.app.clients` picks.

SIGTERM and SIGINT stop the run cleanly (:class:`~kl_sync.pipeline.Interruption`): no more claims,
the requests in flight answered and recorded, every unsent row handed back, the run recorded
``interrupted``, and :class:`~kl_sync.failures.Failure` with one line and exit code 143 or 130.
"""

from __future__ import annotations

import functools
import datetime as dt
import gc
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kl_sync.app.clients import klaviyo_client
from kl_sync.failures import EXIT_INTERRUPTED, EXIT_TERMINATED, Failure
from kl_sync.pipeline import Interrupted, Interruption, run_pipeline, signal_name
from kl_sync.settings import Settings

#: The signals that stop a run cleanly.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stopping_on_signals() -> Iterator[Interruption | None]:
    """SIGTERM and SIGINT handled by an :class:`Interruption` while the block runs (the previous
    handlers restored after it). Python lets only the main thread install handlers: elsewhere (a
    run started on a thread) it yields None and the signals keep their handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    interruption = Interruption()
    previous = {signum: signal.signal(signum, interruption) for signum in STOP_SIGNALS}
    try:
        yield interruption
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: The cyclic garbage collector's first threshold while a sync runs (Python's default: 700). A sync
#: allocates millions of short-lived dicts (decoded payloads, built bodies, flattened rows) beside the
#: hundreds of thousands of objects Great Expectations and pandas keep alive, so at 700 the collector
#: ran every few rows and its older generations walked all of them over and over: a third of the
#: sender's CPU per row (benchmarks/README.md, "Garbage collection"). Almost nothing a sync allocates
#: is cyclic garbage, and a collection still runs every ``SYNC_GC_THRESHOLD`` allocations.
SYNC_GC_THRESHOLD = 20_000


@contextmanager
def collecting_less(threshold: int = SYNC_GC_THRESHOLD) -> Iterator[None]:
    """The block runs with the garbage collector's first threshold at ``threshold`` (the older
    generations' unchanged), the previous thresholds restored after it: the process may go on to
    do other work (a test, a flow run in a worker)."""
    previous = gc.get_threshold()
    gc.set_threshold(max(threshold, previous[0]), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def run_sync(
    settings: Settings,
    *,
    steps: Sequence[str] | None = None,
    from_start: bool = False,
    dry_run: bool = False,
    api_key: str | None = None,
    limiter: Any = None,
    verify_since: dt.datetime | None = None,
) -> dict[str, Any]:
    """The same steps in the same order as the flow, the run recorded as ok or failed with its
    reason. Returns the run's counts; re-raises what stopped it."""
    open_client = functools.partial(klaviyo_client, settings, api_key=api_key, limiter=limiter)
    with stopping_on_signals() as interruption, collecting_less():
        try:
            counts = run_pipeline(settings, open_client, steps=steps, from_start=from_start, dry_run=dry_run,
                                  verify_since=verify_since, interruption=interruption)
        except Interrupted as exc:  # before the run was recorded: nothing was claimed yet
            name = signal_name(exc.signum)
            raise Failure(f"interrupted by {name} while starting: nothing was sent",
                          exit_code=EXIT_INTERRUPTED if exc.signum == signal.SIGINT else EXIT_TERMINATED) from None
    # Another run held the store lock: say so once (the run still sent what was due).
    skipped = next((c["skipped"] for c in counts.values() if isinstance(c, dict) and "skipped" in c), None)
    if skipped is not None:
        print(f"kl-sync: {skipped}", file=sys.stderr)
    partly = counts.get("send", {}).get("delivery")
    if partly is not None:  # some rows wait for retry: the run is ok, and says so
        print(f"kl-sync: {partly}", file=sys.stderr)
    return counts

"""The whole sync: parse → orders → customers → suppress → send → verify → consent, as one Prefect flow
(the store-reading steps and the send as one task, the sender beside the steps).

``python flows/sync.py`` runs it once on the current settings; ``prefect.yaml`` schedules it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script, or loaded by path as a deployment's entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kl_sync.settings import prefect_defaults

if __name__ == "__main__":
    prefect_defaults()  # before Prefect is imported: a temporary server under .kl_sync/, given time to start

from prefect import flow
from prefect.states import Failed

import datetime as dt

from flows.common import (
    check_key_task,
    consent_task,
    klaviyo_api_key,
    publish_task,
    read_and_send_task,
    send_task,
    start_run,
    step_task,
    verify_task,
)
from flows.rate_limit import flow_rate_limiter
from kl_sync.app.run import collecting_less
from kl_sync import pipeline
from kl_sync.failures import failure_of
from kl_sync.settings import load_settings


@flow(name="kl-sync", log_prints=True)
def sync(
    steps: list[str] | None = None,
    from_start: bool = False,
    dry_run: bool = False,
    rate_limit: str = "local",
    rate_scale: float = 1.0,
    verify_since: dt.datetime | None = None,
) -> dict[str, Any]:
    """Run the chosen steps (all by default) once; returns the run's counts.

    ``rate_limit``: ``local`` (this process), ``shared`` (every worker on the state database) or
    ``prefect`` (Prefect global concurrency limits, see flows/rate_limit.py). ``verify_since``: the
    verify step checks only rows sent since then (UTC)."""
    # Every flow (the steps' and verify's too) runs through here: the collector as in `kl-sync sync`.
    with collecting_less():
        run = None
        try:
            settings = load_settings()
            chosen = pipeline.parse_steps(steps)
            talks_to_klaviyo = any(step in pipeline.CLIENT_STEPS for step in chosen)
            limiter = flow_rate_limiter(settings, rate_limit, rate_scale) if talks_to_klaviyo else None
            run = start_run(settings, chosen, from_start, dry_run, verify_since)
            api_key = klaviyo_api_key(settings) if talks_to_klaviyo else None
            if api_key:  # without one, kl-sync starts its own emulator, whose key is right
                check_key_task(run, api_key)
            # The store-reading steps and the send run as one task, the sender beside the steps (as
            # `kl-sync sync` runs them), first as in pipeline order; the other steps each as its own task.
            reading = [step for step in chosen if step in pipeline.STORE_STEPS]
            together = pipeline.sends_while_reading(chosen, dry_run=dry_run)
            if together:
                read_and_send_task(run, reading, api_key, limiter)
            for step in chosen:
                if together and (step in reading or step == "send"):
                    continue  # ran above
                if step == "send":
                    send_task(run, api_key, limiter)
                elif step == "verify":
                    verify_task(run, api_key, limiter)
                elif step == "consent":
                    consent_task(run, api_key, limiter)
                else:
                    step_task.with_options(name=step)(run, step)
            undelivered = pipeline.undelivered_failure(run)
            if undelivered is not None:  # nothing delivered, rows wait for retry: the flow run fails
                raise undelivered
        except BaseException as exc:
            failure = failure_of(exc)
            if run is not None:
                publish_task(run, error=failure.line if failure else f"{type(exc).__name__}: {exc}")
            if failure is None:
                raise
            # What a person must fix: the flow run's message is the line `kl-sync` prints, no traceback;
            # calling the flow raises the failure itself (its exit code).
            return Failed(message=failure.line, data=failure)
        return publish_task(run)


def step_flow(step: str) -> Any:
    """A flow that runs one step alone (``flows/parse_log.py`` and friends), for ad-hoc runs."""

    @flow(name=f"kl-sync-{step}")
    def one_step(from_start: bool = False, dry_run: bool = False) -> dict[str, Any]:
        return sync(steps=[step], from_start=from_start, dry_run=dry_run)

    return one_step


@flow(name="kl-sync-verify")
def verify_delivery(since: dt.datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """The verify step alone: read Klaviyo back, send again what never appeared (``since``: only rows
    sent since then)."""
    return sync(steps=["verify"], dry_run=dry_run, verify_since=since)


if __name__ == "__main__":
    from flows.prefect_server import temporary_prefect_server
    from kl_sync.failures import Failure

    try:
        with temporary_prefect_server():  # one that dies with this process, as kl-sync sync --prefect's
            sync()
    except Failure as failure:  # its line is already the flow run's message; no traceback here either
        print(f"kl-sync: {failure.line}", file=sys.stderr)
        sys.exit(failure.exit_code)

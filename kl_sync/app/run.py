"""A whole sync run in this process, without Prefect (``kl-sync sync --no-prefect``, cron, scripts,
tests): the pipeline, given the client :mod:`kl_sync.app.clients` picks."""

from __future__ import annotations

import functools
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

from kl_sync.app.clients import klaviyo_client
from kl_sync.pipeline import run_pipeline
from kl_sync.settings import Settings


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
    counts = run_pipeline(settings, open_client, steps=steps, from_start=from_start, dry_run=dry_run,
                          verify_since=verify_since)
    # Another run held the store lock: say so once (the run still sent what was due).
    skipped = next((c["skipped"] for c in counts.values() if isinstance(c, dict) and "skipped" in c), None)
    if skipped is not None:
        print(f"kl-sync: {skipped}", file=sys.stderr)
    return counts

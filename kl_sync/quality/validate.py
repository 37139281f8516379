"""Validation: a batch of one kind against its suite, every row passed or failed with the names of
the expectations it broke."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from kl_sync.constants import EMAIL_PATTERN, LATEST_EVENT_AHEAD_DAYS, MAX_PROFILE_BYTES, MAX_STRING_BYTES
from kl_sync.kinds import kind_of
from kl_sync.quality.flatten import flatten_batch
from kl_sync.quality.report import UNFLATTENABLE, QualityReport
from kl_sync.quality.suites import QualitySuiteError, engine, expectation_name

#: Klaviyo accepts event times up to one year ahead; the suites get ``now + TIME_HORIZON``.
TIME_HORIZON = dt.timedelta(days=LATEST_EVENT_AHEAD_DAYS)
#: Klaviyo's limits as the suites' parameters (``{"$PARAMETER": "max_string_bytes"}``): the numbers and
#: the e-mail rule the client and the emulator use, so a row the suites pass is one Klaviyo takes.
LIMITS = {"email_regex": EMAIL_PATTERN, "max_string_bytes": MAX_STRING_BYTES, "max_profile_bytes": MAX_PROFILE_BYTES}


def _raised(result: Any) -> str | None:
    """The message of an exception GX caught while running one expectation, if it caught one."""
    info = result.exception_info or {}
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def _unexpected(kind: str, result: Any) -> tuple[str, list[int]]:
    """(expectation name, positions of the unexpected rows) of one expectation result; raise if it did not run."""
    config = result.expectation_config
    name = expectation_name(config.type, config.kwargs)
    message = _raised(result)
    if message is not None:
        raise QualitySuiteError(f"{kind}: {name} could not run: {message}")
    entries = result.result.get("unexpected_index_list") or []
    if not result.success and not entries:
        # A failure that names no row (an aggregate check) cannot become a per-row verdict.
        raise QualitySuiteError(f"{kind}: {name} failed without naming the rows that broke it")
    return name, [int(position) for position in entries]


def _run_suites(kind: str, gx: Any, plan: Any, frame: Any, parameters: dict[str, Any]) -> tuple[dict[str, set[str]], list[Any]]:
    """Run a kind's per-row suite over ``frame`` and its per-distinct-value suites over each column's
    distinct values; the keys each expectation failed, and the GX results."""
    import numpy as np
    import pandas as pd

    by_name: dict[str, set[str]] = {name: set() for name in plan.names}
    validations: list[Any] = []
    if not len(frame):
        return by_name, validations
    frame_keys = frame["key"].to_numpy(dtype=object)
    with gx.lock:
        result = gx.run(plan.rows, frame, parameters)
    validations.append(result)
    for expectation_result in result.results:
        name, positions = _unexpected(kind, expectation_result)
        by_name[name].update(frame_keys[positions])
    for column, suite in plan.distinct.items():
        codes, distinct = frame[column].factorize()  # nulls get code -1: not checked, as GX skips nulls
        if not len(distinct):
            continue
        with gx.lock:
            result = gx.run(suite, pd.DataFrame({column: distinct}), parameters)
        validations.append(result)
        for expectation_result in result.results:
            name, positions = _unexpected(kind, expectation_result)
            by_name[name].update(frame_keys[np.isin(codes, positions)])
    return by_name, validations


def validate_batch(
    kind: str,
    rows: Iterable[tuple[str, Any]],
    *,
    metric_names: Collection[str],
    now: dt.datetime | None = None,
    suites_dir: Path | None = None,
) -> QualityReport:
    """Check ``(key, payload)`` rows of one outbox kind against its suite (``kl_sync/expectations/<kind>.json``).
    The rows are read once, so they may be decoded as they are read (the sender's are: benchmark 4).

    ``metric_names`` is the configured set of metric names for this kind (unused by the profile and
    suppression suites); ``now`` (tz-aware, default: the current time) bounds how far ahead an event
    time may be; ``suites_dir`` replaces :data:`SUITES_DIR`. Raises :class:`QualitySuiteError` when a
    suite cannot be loaded or run, never for bad data: bad data is what the report is for.
    """
    carries_metrics = kind_of(kind).metrics is not None
    names_allowed = sorted({str(name) for name in metric_names})
    if carries_metrics and not names_allowed:
        raise ValueError(f"metric_names is empty: every {kind} row would fail; pass the configured metric names")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parameters = {"metric_names": names_allowed, "latest_time": (now + TIME_HORIZON).isoformat(), **LIMITS}

    batch = flatten_batch(kind, rows)
    keys = batch.keys
    failed = {key: [f"{UNFLATTENABLE}: {reason}"] for key, reason in batch.unflattenable.items()}
    gx = engine(suites_dir)
    plan = gx.kinds[kind]
    by_name, validations = _run_suites(kind, gx, plan, batch.frame, parameters)

    for name in plan.names:  # suite order, so every row lists its failures the same way
        for key in by_name[name]:
            failed.setdefault(key, []).append(name)
    failures = {key: failed[key] for key in dict.fromkeys(keys) if key in failed}
    by_expectation = {name: len(by_name[name]) for name in plan.names}
    if batch.unflattenable:
        by_expectation[UNFLATTENABLE] = len(batch.unflattenable)
    return QualityReport(
        kind=kind,
        rows=len(keys),
        failures=failures,
        passed_keys=[key for key in keys if key not in failed],
        by_expectation=by_expectation,
        validations=tuple(validations),
    )

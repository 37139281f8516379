"""Verify: a 202 is not delivery. Read Klaviyo back, mark what it holds verified, send again what never
appeared, and dead-letter what still does not.

Rows sent at least ``verify_after`` ago and not yet verified are due. Each kind's verifier (in the
registry, :mod:`kl_sync.kinds`) reads them back (:mod:`kl_sync.klaviyo.delivery`): events through
``GET /api/events`` per metric and time window, suppressions through the profiles' subscriptions.
Per due row:

- found: delivered (:func:`kl_sync.state.delivery.mark_delivered`), status ``verified``;
- not found, sent less than ``grace`` ago: ``missing`` (looked for again at the next verification);
- not found after ``grace``: sent again, now, through the sender (its unique_id makes that safe: a
  copy Klaviyo was merely slow to show is deduplicated), unless it has been sent ``max_sends``
  times, when it becomes a dead letter "accepted by Klaviyo (202) but never appeared after N sends".

The step reads at most what it must: only due rows, one read per metric and window, and its windows
come from the due rows' own times (:func:`kl_sync.klaviyo.delivery.plan_windows`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from kl_sync.kinds import VerifyContext, Verifier, verifiers
from kl_sync.state.codec import utcnow
from kl_sync.state.dead_letters import mark_dead
from kl_sync.state.delivery import (
    DueRow,
    claimed_rows,
    due_for_verification,
    mark_delivered,
    mark_missing,
    requeue_missing,
    spreads,
)
from kl_sync.steps.common import StepResult

#: Due rows read from the state database at a time (id, key, metric, time: no payloads; ~200 bytes a
#: row). Each chunk reads its own windows, so a chunk boundary costs one partial page per metric.
CHUNK_ROWS = 100_000


def never_appeared(sends: int) -> str:
    """The dead letter's reason for a row Klaviyo accepted ``sends`` times and never showed."""
    return f"accepted by Klaviyo (202) but never appeared after {sends} send{'s' if sends != 1 else ''}"


def _payloads(state: Engine) -> Callable[[Sequence[int]], dict[int, dict[str, Any]]]:
    def load(ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        with state.connect() as conn:
            return {item.id: item.payload for item in claimed_rows(conn, ids)}

    return load


def _label(row: DueRow) -> str:
    return row.metric or row.kind


def _verify_chunk(
    state: Engine,
    client: Any,
    verifier: Verifier,
    context: VerifyContext,
    due: list[DueRow],
    result: StepResult,
    *,
    overdue_before: dt.datetime,
    max_sends: int,
    run_id: str | None,
) -> int:
    """Read one chunk of due rows back and record what was found; returns how many were re-queued."""
    with state.connect() as conn:
        context.spreads = spreads(conn, {row.metric for row in due if row.metric})
    found = verifier.find(client, due, context)
    delivered = [row for row in due if row.key in found]
    missing = [row for row in due if row.key not in found]
    overdue = [row for row in missing if row.sent_at <= overdue_before]
    dead = {row.id: row for row in overdue if row.sends >= max_sends}
    with state.begin() as conn:
        mark_delivered(conn, [row.key for row in delivered], run_id=run_id)
        mark_missing(conn, [row.id for row in missing if row.id not in dead])
        # A row another worker holds under a live lease (sending it again now) is not given up on.
        lettered = sum(mark_dead(conn, item, step="verify", reason=never_appeared(dead[item.id].sends), run_id=run_id)
                       for item in claimed_rows(conn, list(dead)))
        requeued = requeue_missing(conn, [row for row in overdue if row.id not in dead])
    for row in delivered:
        result.count_metric(_label(row))
    result.rows_read += len(due)
    result.dead_letters += lettered
    for name, n in (("verified", len(delivered)), ("missing", len(missing) - len(dead) - len(requeued)),
                    ("resent", len(requeued))):
        result.details[name] += n
    return len(requeued)


def verify_outbox(
    state: Engine,
    client: Any,
    *,
    verify_after: dt.timedelta,
    grace: dt.timedelta,
    max_sends: int,
    resend: Callable[[], StepResult] | None = None,
    since: dt.datetime | None = None,
    run_id: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    now: dt.datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> StepResult:
    """Verify every row due (sent at least ``verify_after`` ago, and since ``since`` if given: naive
    UTC), then ``resend()`` what went back to the queue. Counts: ``rows_read`` (rows looked for),
    ``verified`` (also per metric, in ``by_metric``), ``missing`` (not found yet, inside the grace),
    ``resent`` and ``dead_letters``."""
    result = StepResult("verify", details={"verified": 0, "missing": 0, "resent": 0})
    now = now or utcnow()
    requeued = 0
    for verifier, kinds in verifiers().items():
        context = VerifyContext({}, _payloads(state))
        after_id = 0
        while True:
            with state.connect() as conn:
                due = due_for_verification(conn, sent_before=now - verify_after, kinds=kinds, sent_since=since,
                                           after_id=after_id, limit=chunk_rows)
            if not due:
                break
            after_id = due[-1].id
            requeued += _verify_chunk(state, client, verifier, context, due, result, overdue_before=now - grace,
                                      max_sends=max_sends, run_id=run_id)
            if progress is not None:
                progress(len(due))
    if requeued and resend is not None:
        result.details["resend"] = resend().as_dict()
    return result

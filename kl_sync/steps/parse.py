"""Log Parse: new ``system_log`` rows of the tracked types become outbox events.

Each event carries the log entry's own time (with the store's offset), ``unique_id`` = its outbox
key ``log:<id>``, the row's message and data as properties, and the customer's CURRENT profile. Old
events go with ``backfill: true`` so an initial sync of years of history fires no Klaviyo flows.
A row that cannot become a valid event is dead-lettered with its reason; the cursor moves past it.
Each chunk's outbox rows, dead letters, touched customers and cursor commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, Row

from kl_sync.payloads import EventPayload
from kl_sync.settings import Settings
from kl_sync.state.cursors import get_cursor
from kl_sync.state.outbox import OutboxItem
from kl_sync.steps.common import (
    PROFILE_COLUMNS,
    BadRow,
    CustomerProfiles,
    StepResult,
    commit_chunk,
    is_backfill,
    load_customers,
)
from kl_sync.normalize import normalize_email
from kl_sync.store.contract import system_log
from kl_sync.store.readers import STREAMS, read_after

STREAM = "system_log"
KIND = "log_event"


def log_key(log_id: int) -> str:
    return f"log:{log_id}"


def _log_data(row: Row[Any]) -> dict[str, Any]:
    if row.data is None or not str(row.data).strip():
        return {}
    try:
        data = json.loads(row.data)
    except ValueError as exc:
        raise BadRow(f"log {row.id}: data is not valid JSON ({exc.msg} at char {exc.pos})") from None
    return data if isinstance(data, dict) else {"data": data}


def build_log_event(
    row: Row[Any],
    profiles: CustomerProfiles,
    *,
    metric: str,
    tz: ZoneInfo,
    now: dt.datetime,
    backfill_after: dt.timedelta,
) -> EventPayload:
    """One log row (with the profiles of its chunk's customers) → the event payload. Pure.

    Raises :class:`BadRow` with the reason when the row cannot become a valid event.
    """
    data = _log_data(row)
    if row.customer_id is not None:
        try:
            profile = profiles.of(row.customer_id)
        except BadRow as exc:
            raise BadRow(f"log {row.id}: {exc}") from None
    else:
        email = normalize_email(data.get("email"))
        if email is None:
            raise BadRow(f"log {row.id}: no customer and no usable e-mail in its data ({data.get('email')!r})")
        profile = {"email": email}
    when = row.created_at.replace(tzinfo=tz)
    properties = {**data, "message": row.message, "log_id": row.id, "log_type": row.type}
    return {
        "metric": metric,
        "time": when.isoformat(),
        "unique_id": log_key(row.id),
        "properties": properties,
        "profile": profile,
        "backfill": is_backfill(when, now, backfill_after),
    }


def parse_log(
    store: Engine,
    state: Engine,
    settings: Settings,
    *,
    from_start: bool = False,
    run_id: str | None = None,
    now: dt.datetime | None = None,
    progress: Any = None,
) -> StepResult:
    """Queue every tracked log row after the cursor (or from the first row with ``from_start``)."""
    result = StepResult("parse")
    tz = settings.tz
    now = now or dt.datetime.now(dt.UTC)
    tracked = dict(settings.log_metrics)
    stream = STREAMS[STREAM]
    with state.connect() as conn:
        cursor = None if from_start else get_cursor(conn, STREAM)
    for chunk in read_after(store, stream, cursor, chunk_size=settings.chunk_size, where=system_log.c.type.in_(list(tracked))):
        profiles = CustomerProfiles(load_customers(store, (row.customer_id for row in chunk), PROFILE_COLUMNS), tz)
        items: list[OutboxItem] = []
        letters: list[dict[str, Any]] = []
        touched: list[int] = []
        for row in chunk:
            try:
                event = build_log_event(
                    row, profiles, metric=tracked[row.type], tz=tz, now=now,
                    backfill_after=settings.backfill_after,
                )
            except BadRow as exc:
                letters.append({"key": log_key(row.id), "step": "parse", "kind": KIND, "reason": str(exc),
                                "original": dict(row._mapping)})
                continue
            items.append(OutboxItem(event["unique_id"], KIND, event))
            if row.customer_id is not None:
                touched.append(row.customer_id)
        commit_chunk(state, result, step="parse", stream=STREAM, cursor=stream.cursor_of(chunk[-1]), items=items,
                     letters=letters, touched=touched, run_id=run_id)
        result.rows_read += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return result

"""Log Parse: new ``system_log`` rows of the tracked types become outbox events.

Each event carries the log entry's own time (with the store's offset), ``unique_id`` = its outbox
key ``log:<id>``, the row's message and data as properties, and the customer's CURRENT profile. Old
events go with ``backfill: true`` so an initial sync of years of history fires no Klaviyo flows.
A row that cannot become a valid event is dead-lettered with its reason; the cursor moves past it.
Each run re-reads ``KL_SYNC_LOG_LOOKBACK_IDS`` ids before the cursor, for rows committed late.
The step is a declared stream (:data:`PARSE`, run by :mod:`kl_sync.steps.stream`): each chunk's
outbox rows, dead letters, touched customers and cursor commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row

from kl_sync.normalize import email_problem, normalize_email, store_moment
from kl_sync.payloads import EventPayload
from kl_sync.state.outbox import OutboxItem
from kl_sync.steps.common import PROFILE_COLUMNS, BadRow, CustomerProfiles, is_backfill
from kl_sync.steps.stream import Built, RowBuilder, StepContext, StoreStream, StreamStep, id_lookback
from kl_sync.store.contract import system_log
from kl_sync.store.readers import customers_by_id

STREAM = "system_log"
KIND = "log_event"
KEY_PREFIX = "log"


def log_key(log_id: int) -> str:
    return f"{KEY_PREFIX}:{log_id}"


def _log_data(row: Row[Any]) -> dict[str, Any]:
    if row.data is None or not str(row.data).strip():
        return {}
    try:
        data = json.loads(row.data)
    except json.JSONDecodeError as exc:
        raise BadRow(f"log {row.id}: data is not valid JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise BadRow(f"log {row.id}: data nests too deeply to be read ({len(row.data):,} characters)") from None
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
            raise BadRow(f"log {row.id}: no customer, and its data has {email_problem(data.get('email'))}")
        profile = {"email": email}
    when = store_moment(row.created_at, tz)
    properties = {**data, "message": row.message, "log_id": row.id, "log_type": row.type}
    return {
        "metric": metric,
        "time": when.isoformat(),
        "unique_id": log_key(row.id),
        "properties": properties,
        "profile": profile,
        "backfill": is_backfill(when, now, backfill_after),
    }


def _prepare(context: StepContext, rows: list[Row[Any]]) -> RowBuilder:
    """The chunk's customers, each profile built once; the builder of one log row's event."""
    settings, tz = context.settings, context.settings.tz
    profiles = CustomerProfiles(customers_by_id(context.store, (row.customer_id for row in rows), PROFILE_COLUMNS), tz)

    def build(row: Row[Any]) -> Built:
        event = build_log_event(row, profiles, metric=settings.log_metrics[row.type], tz=tz, now=context.now,
                                backfill_after=settings.backfill_after)
        touched = () if row.customer_id is None else (row.customer_id,)
        return Built([OutboxItem(event["unique_id"], KIND, event)], touched)

    return build


#: The seed's Log Parse: tracked ``system_log`` rows after the cursor (re-reading ``log_lookback_ids``
#: ids before it, for rows committed late), one event each.
PARSE = StreamStep(
    name="parse",
    source=StoreStream(STREAM, where=lambda settings: system_log.c.type.in_(list(settings.log_metrics)),
                       rewind=id_lookback(lambda settings: settings.log_lookback_ids)),
    kinds=(KIND,),
    key_prefix=KEY_PREFIX,
    prepare=_prepare,
    progress_label="log rows",
)


#: Queue every tracked log row after the cursor (or from the first row with ``from_start``).
parse_log = PARSE.run

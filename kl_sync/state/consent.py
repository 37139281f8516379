"""The ``klaviyo_consent`` table: what Klaviyo said of the e-mails it cannot send marketing to (the
consent read-back), and its cursor, the latest suppression time read (``cursors``, stream
``klaviyo_consent``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import utcnow
from kl_sync.state.cursors import get_cursor, parse_cursor_datetime, set_cursor
from kl_sync.state.tables import klaviyo_consent

STREAM = "klaviyo_consent"


def consent_cursor(conn: Connection) -> dt.datetime | None:
    """The latest suppression time read so far (aware, UTC), None before the first read."""
    value = get_cursor(conn, STREAM)
    return None if value is None else parse_cursor_datetime(value[0]).replace(tzinfo=dt.UTC)


def record_consent(conn: Connection, rows: Sequence[Any]) -> None:
    """Keep what Klaviyo said (``KlaviyoConsent`` rows, the latest per e-mail) and move the cursor to
    the latest suppression time among them, in the caller's transaction."""
    latest = {row.email: row for row in rows}
    if not latest:
        return
    for chunk in chunks(sorted(latest), IN_LIST_SIZE):
        conn.execute(klaviyo_consent.delete().where(klaviyo_consent.c.email.in_(chunk)))
    now = utcnow()
    conn.execute(klaviyo_consent.insert(), [
        {"email": r.email[:320], "profile_id": r.profile_id, "external_id": r.external_id, "reason": r.reason,
         "suppressed_at": r.suppressed_at.astimezone(dt.UTC).replace(tzinfo=None), "can_receive": r.can_receive,
         "read_at": now}
        for r in latest.values()
    ])
    newest = max(r.suppressed_at for r in latest.values()).astimezone(dt.UTC).replace(tzinfo=None)
    set_cursor(conn, stream=STREAM, value=[newest.isoformat()])


def consent_rows(conn: Connection) -> list[dict[str, Any]]:
    """Every e-mail Klaviyo cannot send marketing to, as last read: email, profile_id, external_id,
    reason, suppressed_at (naive UTC)."""
    query = select(klaviyo_consent).where(klaviyo_consent.c.can_receive.is_(False)).order_by(klaviyo_consent.c.email)
    return [dict(row._mapping) for row in conn.execute(query)]

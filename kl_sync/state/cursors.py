"""The ``cursors`` table: where each store-reading step has got to in its stream."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from kl_sync.state.codec import utcnow
from kl_sync.state.tables import cursors


def get_cursor(conn: Connection, stream: str) -> list[Any] | None:
    value = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream)).scalar()
    return json.loads(value) if value is not None else None


def set_cursor(conn: Connection, stream: str, value: Sequence[Any]) -> None:
    """Upsert the cursor; callers only ever move it forward, in the transaction of what it covers."""
    text_value = json.dumps([_cursor_value(v) for v in value])
    now = utcnow()
    updated = conn.execute(
        update(cursors).where(cursors.c.stream == stream).values(value=text_value, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(insert(cursors).values(stream=stream, value=text_value, updated_at=now))


def reset_cursor(conn: Connection, stream: str) -> None:
    conn.execute(cursors.delete().where(cursors.c.stream == stream))


def _cursor_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def parse_cursor_datetime(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def all_cursors(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(cursors).order_by(cursors.c.stream))
    return [dict(r._mapping) for r in rows]

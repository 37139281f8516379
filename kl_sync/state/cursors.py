"""The ``cursors`` table: where each store-reading step has got to in its stream.

A cursor only moves forward: two runs reading the same stream (overlapping runs, a ``--from-start``
re-read, a lookback) each commit the place they reached, and the one further on wins."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from kl_sync.state.codec import utcnow
from kl_sync.state.inserts import bound, insert_ignoring_duplicates
from kl_sync.state.tables import cursors


def get_cursor(conn: Connection, stream: str) -> list[Any] | None:
    value = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream)).scalar()
    return json.loads(value) if value is not None else None


def set_cursor(conn: Connection, stream: str, value: Sequence[Any]) -> None:
    """Move the cursor to ``value`` (in the transaction of what it covers) unless it is already
    further on: another run may have committed a later place meanwhile."""
    values = [_cursor_value(v) for v in value]
    text_value = json.dumps(values)
    now = utcnow()
    # The write comes first: it takes the row (on SQLite, the database) for this transaction, so the
    # value read next is the latest committed one and no other run moves it before this commit.
    insert_ignoring_duplicates(conn, cursors, ("stream", "value", "updated_at"),
                               [(stream, text_value, bound(conn, cursors.c.updated_at, now))], "stream")
    current = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream).with_for_update()).scalar()
    if current is not None and current != text_value and not _ahead(values, json.loads(current)):
        return
    conn.execute(update(cursors).where(cursors.c.stream == stream).values(value=text_value, updated_at=now))


def _ahead(value: Sequence[Any], current: Sequence[Any]) -> bool:
    """Whether ``value`` is further on in its stream than ``current`` (both as stored). A cursor of
    another shape (the stream's columns changed) is not comparable: the new one is taken."""
    try:
        return _position(value) > _position(current)
    except TypeError:
        return True


def _position(value: Sequence[Any]) -> tuple[Any, ...]:
    """A stored cursor as comparable values: ISO timestamps as datetimes (text order breaks on a
    value stored without its fraction), numbers as numbers."""
    out: list[Any] = []
    for v in value:
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:
                pass
        out.append(v)
    return tuple(out)


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

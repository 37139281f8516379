"""Streaming readers over the store contract: declared once per table, keyset-paged after a cursor.

A :class:`Stream` is data (table, cursor columns); :func:`read_after` yields chunks of rows strictly
after a cursor value, in cursor order, so no reader ever loads a whole table and a crash resumes at
the last committed cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Engine, Row, Table, and_, or_, select

from kl_sync.db import make_engine

from kl_sync.store.contract import customers, order_items, orders, system_log


@dataclass(frozen=True)
class Stream:
    """A store table read incrementally: rows ordered by ``cursor`` columns, resumed after a value."""

    name: str
    table: Table
    cursor: tuple[str, ...]

    @property
    def cursor_columns(self) -> list[Column[Any]]:
        return [self.table.c[name] for name in self.cursor]

    def cursor_of(self, row: Row[Any]) -> tuple[Any, ...]:
        mapping = row._mapping
        return tuple(mapping[name] for name in self.cursor)


STREAMS: dict[str, Stream] = {
    "system_log": Stream("system_log", system_log, ("id",)),
    # Orders change status after they are created: follow updated_at, id breaks ties.
    "orders": Stream("orders", orders, ("updated_at", "id")),
    "customers": Stream("customers", customers, ("updated_at", "id")),
    "order_items": Stream("order_items", order_items, ("id",)),
}


def _after(columns: Sequence[Column[Any]], after: Sequence[Any]):
    """``(c1, c2, …) > (v1, v2, …)`` spelled out, which every backend plans with the index."""
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == after[j] for j in range(i)]
        clauses.append(and_(*equal, column > after[i]))
    return or_(*clauses)


def read_after(
    engine: Engine,
    stream: Stream,
    after: Sequence[Any] | None,
    *,
    chunk_size: int = 5000,
    where: Any = None,
    limit: int | None = None,
) -> Iterator[list[Row[Any]]]:
    """Yield lists of at most ``chunk_size`` rows of ``stream`` after ``after``, in cursor order.

    Each chunk is its own short query (keyset paging), so no server-side cursor or transaction is
    held open between chunks while the caller writes the state DB.
    """
    columns = stream.cursor_columns
    position = tuple(after) if after is not None else None
    remaining = limit
    while remaining is None or remaining > 0:
        size = chunk_size if remaining is None else min(chunk_size, remaining)
        query = select(stream.table).order_by(*columns).limit(size)
        if position is not None:
            query = query.where(_after(columns, position))
        if where is not None:
            query = query.where(where)
        with engine.connect() as conn:
            rows = list(conn.execute(query))
        if not rows:
            return
        yield rows
        position = stream.cursor_of(rows[-1])
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def store_engine(url: str) -> Engine:
    """An engine for the store (read only: kl-sync never writes through it)."""
    return make_engine(url, sqlite_wal=False)

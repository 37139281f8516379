"""Readers over the store contract: streams declared once per table, keyset-paged after a cursor,
and lookups of the rows a chunk refers to.

A :class:`Stream` is data (table, cursor columns); :func:`read_after` yields chunks of rows strictly
after a cursor value, in cursor order, so no reader ever loads a whole table and a crash resumes at
the last committed cursor. :func:`customers_by_id` and :func:`order_items_by_order` fetch what a
chunk's rows name, a thousand ids a query.

SQLite keeps any value in any column ("not a date" in a DATETIME, "abc" in a NUMERIC). Read the
usual way, one such value fails the query of its whole chunk, on every run. On SQLite the readers
convert each typed value on its own instead (:func:`readable_columns`): a value that is not of its
column's type comes back as :class:`Unreadable`, which fails its row only (:func:`unreadable_problem`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean, Column, Date, DateTime, Engine, Integer, Numeric, Row, String, Table, and_, or_, select, type_coerce,
)
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.db import backend, make_engine
from kl_sync.payloads import printable
from kl_sync.store.contract import customers, order_items, orders, system_log


@dataclass(frozen=True)
class Unreadable:
    """A value the store holds that is not of its column's type (SQLite only: a server refuses it on
    write). ``raw`` is the value as SQLite gave it; ``expected`` says what the column holds."""

    raw: Any
    expected: str

    def __str__(self) -> str:
        # What a dead letter's original shows: the stored value itself.
        return printable(str(self.raw))


def unreadable_problem(row: Row[Any] | Mapping[str, Any]) -> str | None:
    """``created_at is 'not a date', not a date and time`` for the first value of ``row`` that is
    :class:`Unreadable` (None when every value is of its column's type)."""
    mapping = row._mapping if isinstance(row, Row) else row
    for name, value in mapping.items():
        if isinstance(value, Unreadable):
            return f"{name} is {printable(repr(value.raw))[:80]}, not {value.expected}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _PerValue(TypeDecorator[Any]):
    """A typed column read from SQLite's raw value, converted here one value at a time: what the
    column's own conversion refuses (or a number that is not finite) is :class:`Unreadable`."""

    impl = NullType
    cache_ok = True

    def __init__(self, column_type: TypeEngine[Any], expected: str) -> None:
        super().__init__()
        self.column_type = column_type
        self.expected = expected

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # One closure per column and query (the conversion looked up once), not a method per value.
        convert = self.column_type.dialect_impl(dialect).result_processor(dialect, coltype)
        expected, column_type = self.expected, self.column_type

        if isinstance(column_type, Integer):
            def integer(value: Any) -> Any:
                return value if value is None or value.__class__ is int else Unreadable(value, expected)
            return integer

        if convert is not None and isinstance(column_type, (DateTime, Date)):
            def moment(value: Any) -> Any:
                try:
                    return convert(value)
                except (ValueError, TypeError):
                    return Unreadable(value, expected)
            return moment

        numeric = isinstance(column_type, Numeric)

        def per_value(value: Any) -> Any:
            if value is None:
                return None
            kind = value.__class__
            if kind is float:
                if not math.isfinite(value):
                    return Unreadable(value, expected)
            elif kind is not int and (numeric or isinstance(column_type, Boolean)):
                return Unreadable(value, expected)
            try:
                converted = value if convert is None else convert(value)
            except (ValueError, TypeError, ArithmeticError):
                return Unreadable(value, expected)
            if numeric and not converted.is_finite():
                return Unreadable(value, expected)
            return converted

        return per_value


#: Column types whose stored value SQLite does not enforce, and what a dead letter says they hold
#: (most specific first: DateTime before Date, Boolean is not an Integer).
_EXPECTED = ((DateTime, "a date and time"), (Date, "a date"), (Boolean, "a boolean (0 or 1)"),
             (Numeric, "a finite number"), (Integer, "an integer"))


def readable_columns(engine: Engine, columns: Iterable[Column[Any]]) -> list[Any]:
    """``columns`` to select so that no value can fail the query: on SQLite each typed column is
    converted per value (:class:`_PerValue`); on servers, which enforce their types, as they are."""
    if backend(engine) != "sqlite":
        return list(columns)
    selected: list[Any] = []
    for column in columns:
        expected = next((text for kind, text in _EXPECTED if isinstance(column.type, kind)), None)
        selected.append(column if expected is None
                        else type_coerce(column, _PerValue(column.type, expected)).label(column.name))
    return selected


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

    def readable_cursor(self, row: Row[Any]) -> bool:
        """Whether the row's cursor values are of their types (a cursor is only ever kept at such a row)."""
        mapping = row._mapping
        return not any(isinstance(mapping[name], Unreadable) for name in self.cursor)


STREAMS: dict[str, Stream] = {
    "system_log": Stream("system_log", system_log, ("id",)),
    # Orders change status after they are created: follow updated_at, id breaks ties.
    "orders": Stream("orders", orders, ("updated_at", "id")),
    "customers": Stream("customers", customers, ("updated_at", "id")),
    "order_items": Stream("order_items", order_items, ("id",)),
}


def _after(columns: Sequence[Any], after: Sequence[Any]):
    """``(c1, c2, …) > (v1, v2, …)`` spelled out, which every backend plans with the index."""
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == after[j] for j in range(i)]
        clauses.append(and_(*equal, column > after[i]))
    return or_(*clauses)


def _as_stored(engine: Engine, columns: Sequence[Column[Any]]) -> list[Any]:
    """The cursor columns as the database compares them while paging.

    SQLite keeps a datetime as text and ORDER BY sorts that text, whatever format the store's writer
    chose. Compared as datetimes, a value stored without fractional seconds ("… 10:00:00") never
    equals the "… 10:00:00.000000" SQLAlchemy binds, and the rows sharing it with the last row of a
    chunk were skipped. So on SQLite the datetime cursor columns are paged on their stored text.
    """
    if backend(engine) != "sqlite":
        return list(columns)
    return [type_coerce(c, String) if isinstance(c.type, DateTime) else c for c in columns]


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
    paged_on = _as_stored(engine, columns)
    # Columns paged on their stored text need the last row's stored text: one more lookup per chunk.
    stored = [c for c, p in zip(columns, paged_on, strict=True) if c is not p]
    stored_names = {c.name for c in stored}
    primary_key = list(stream.table.primary_key.columns)
    position = tuple(after) if after is not None else None
    if position is not None and stored:
        # A caller's datetimes, as SQLAlchemy would have bound them to the datetime columns.
        dialect = engine.dialect
        position = tuple(
            column.type.dialect_impl(dialect).bind_processor(dialect)(value)
            if column.name in stored_names and value is not None else value
            for column, value in zip(columns, position, strict=True)
        )
    remaining = limit
    while remaining is None or remaining > 0:
        size = chunk_size if remaining is None else min(chunk_size, remaining)
        query = select(*readable_columns(engine, stream.table.columns)).order_by(*columns).limit(size)
        if position is not None:
            query = query.where(_after(paged_on if stored else columns, position))
        if where is not None:
            query = query.where(where)
        with engine.connect() as conn:
            rows = list(conn.execute(query))
            if rows and stored:
                last = rows[-1]._mapping
                text_of = conn.execute(
                    select(*(type_coerce(c, String) for c in stored)).where(*(k == last[k.name] for k in primary_key))
                ).one()
        if not rows:
            return
        yield rows
        position = tuple(v.raw if isinstance(v, Unreadable) else v for v in stream.cursor_of(rows[-1]))
        if stored:
            texts = dict(zip((c.name for c in stored), text_of, strict=True))
            position = tuple(texts.get(name, value) for name, value in zip(stream.cursor, position, strict=True))
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def store_engine(url: str) -> Engine:
    """An engine for the store (read only: kl-sync never writes through it)."""
    return make_engine(url, sqlite_wal=False, text_per_value=True)


def customers_by_id(
    engine: Engine, ids: Iterable[int | None], columns: Sequence[str] | None = None
) -> dict[int, Row[Any]]:
    """The current rows of these customers (all columns, or ``columns``); ids not in the store are absent."""
    # An id that is not an integer (Unreadable) names no customer: its row is a dead letter anyway.
    wanted = sorted({i for i in ids if _is_int(i)})
    chosen = [customers.c[name] for name in columns] if columns else list(customers.columns)
    query = select(*readable_columns(engine, chosen))
    found: dict[int, Row[Any]] = {}
    with engine.connect() as conn:
        for chunk in chunks(wanted, IN_LIST_SIZE):
            for row in conn.execute(query.where(customers.c.id.in_(chunk))):
                found[row.id] = row
    return found


def order_items_by_order(engine: Engine, order_ids: Sequence[int]) -> dict[int, list[Row[Any]]]:
    """Each order's lines, in line order (an order without lines maps to an empty list)."""
    found: dict[int, list[Row[Any]]] = {oid: [] for oid in order_ids}
    wanted = [oid for oid in order_ids if _is_int(oid)]
    with engine.connect() as conn:
        for chunk in chunks(wanted, IN_LIST_SIZE):
            query = (select(*readable_columns(engine, order_items.columns))
                     .where(order_items.c.order_id.in_(chunk)).order_by(order_items.c.id))
            for row in conn.execute(query):
                found[row.order_id].append(row)
    return found

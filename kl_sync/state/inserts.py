"""The bulk writes the state tables share: inserting many rows whose key may already be there, and
finding which keys are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.db import backend, driver_insert

#: Bind parameters per statement: under SQLite's 32,766 and PostgreSQL's 65,535.
MAX_PARAMS = 30_000


def binder(conn: Connection, column: Any) -> Callable[[Any], Any]:
    """Turns values into what the driver takes for ``column`` (on SQLite, timestamps become the text
    SQLAlchemy reads back); made once per statement, for values bound on every row of it."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if processor is None:
        return lambda value: value
    return lambda value: None if value is None else processor(value)


def bound(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as the driver takes it for ``column``, for a value bound once and repeated on every
    row of a statement."""
    return binder(conn, column)(value)


def existing(conn: Connection, column: Any, values: Sequence[Any]) -> set[Any]:
    """Which of ``values`` are in ``column`` already."""
    found: set[Any] = set()
    for chunk in chunks(values, IN_LIST_SIZE):
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found


def insert_ignoring_duplicates(conn: Connection, table: Any, names: Sequence[str], rows: list[tuple[Any, ...]],
                               key: str) -> set[Any]:
    """INSERT rows (tuples of driver-ready values for ``names``) whose ``key`` is new; rows already
    there are left exactly as they are. Returns the keys that were new.

    Drivers' rowcounts for multi-row upserts are unreliable (MySQL counts "found" rows, batched inserts
    report one batch), so PostgreSQL and SQLite return the inserted keys and MySQL counts them up front.
    The statement goes to the driver as written: SQLAlchemy's per-row parameter processing was the
    largest single cost of the parse step (~20 µs a row, benchmarks/README.md).
    """
    if not rows:
        return set()
    kind = backend(conn.engine)
    into, one_row = driver_insert(conn.dialect, table, names)
    quoted_key = conn.dialect.identifier_preparer.quote(key)
    if kind in {"postgresql", "sqlite"}:
        # DO NOTHING … RETURNING names exactly the rows inserted, in the same statement, with no
        # window between a check and the insert.
        per_statement = max(1, MAX_PARAMS // len(names))
        new: set[Any] = set()
        for batch in chunks(rows, per_statement):
            sql = (into + ", ".join([one_row] * len(batch))
                   + f" ON CONFLICT ({quoted_key}) DO NOTHING RETURNING {quoted_key}")
            new.update(conn.exec_driver_sql(sql, tuple(v for values in batch for v in values)).scalars())
        return new
    position = list(names).index(key)
    new_keys = {values[position] for values in rows} - existing(conn, table.c[key], [v[position] for v in rows])
    # MySQL has no DO NOTHING (nor RETURNING); a self-assignment is the no-op that does not hide other
    # errors. PyMySQL's executemany sends this as multi-row INSERTs.
    conn.exec_driver_sql(into + one_row + f" ON DUPLICATE KEY UPDATE {quoted_key} = {quoted_key}", rows)
    return new_keys

"""Synthetic stores for the benchmarks, filled by the database itself (one INSERT … SELECT per table).

The demo generator (``kl_sync.store.generate``) builds realistic history in Python, which takes
minutes at a million rows; a benchmark needs many rows fast, every one of them valid, so its figures
measure kl-sync and not the dead-letter path. Rows are deterministic functions of their id.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, text

from kl_sync.db import backend, make_engine
from kl_sync.settings import DEFAULT_LOG_METRICS
from kl_sync.store.contract import TABLES, metadata

#: The first row's time; row i is i minutes later (a million rows span about two years).
EPOCH = dt.datetime(2024, 1, 1)
LOG_TYPES = tuple(sorted(DEFAULT_LOG_METRICS))
#: Orders' statuses, cycled: Placed (one event set), Completed (placed + fulfilled), Cancelled.
ORDER_STATUSES = ("Placed", "Completed", "Completed", "Cancelled")


def _numbers(kind: str, count_param: str) -> tuple[str, str]:
    """(prefix, FROM clause) producing ``n.i`` = 1 … count on this backend."""
    if kind == "sqlite":
        return (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :{count_param}) ",
                "n")
    return "", f"generate_series(1, :{count_param}) AS n(i)"


def _minutes(kind: str, expr: str) -> str:
    if kind == "sqlite":
        return f"datetime('{EPOCH:%Y-%m-%d %H:%M:%S}', '+' || ({expr}) || ' minutes')"
    return f"(TIMESTAMP '{EPOCH:%Y-%m-%d %H:%M:%S}' + ({expr}) * INTERVAL '1 minute')"


def _insert(conn, kind: str, table: str, columns: str, select_list: str, count: int) -> None:
    prefix, source = _numbers(kind, "count")
    sql = f"{prefix}INSERT INTO {table} ({columns}) SELECT {select_list} FROM {source}"
    if kind == "sqlite":
        # SQLite wants the CTE inside the INSERT's SELECT when the INSERT names its columns.
        sql = f"INSERT INTO {table} ({columns}) {prefix}SELECT {select_list} FROM {source}"
    conn.execute(text(sql), {"count": count})


def fill_store(engine: Engine, *, customers: int, log_rows: int = 0, orders: int = 0) -> None:
    """Create the contract tables in an empty store and fill them with valid rows."""
    kind = backend(engine)
    metadata.drop_all(engine, tables=list(TABLES))
    metadata.create_all(engine, tables=list(TABLES))
    concat = "||"
    types = ", ".join(f"'{t}'" for t in LOG_TYPES)
    if kind == "sqlite":
        pick_type = f"json_extract('[{types.replace(chr(39), chr(34))}]', '$[' || (i % {len(LOG_TYPES)}) || ']')"
        pick_status = ("json_extract('[" + ",".join(f'"{s}"' for s in ORDER_STATUSES)
                       + f"]', '$[' || (i % {len(ORDER_STATUSES)}) || ']')")
        true = "1"
    else:
        pick_type = f"(ARRAY[{types}])[(i % {len(LOG_TYPES)}) + 1]"
        pick_status = "(ARRAY[" + ",".join(f"'{s}'" for s in ORDER_STATUSES) + f"])[(i % {len(ORDER_STATUSES)}) + 1]"
        true = "TRUE"
    with engine.begin() as conn:
        _insert(
            conn, kind, "customers",
            "id, email, first_name, last_name, status, schedule, box, signup_date, email_subscribed, "
            "has_filled_out_profile, created_at, updated_at",
            f"i, 'customer' {concat} i {concat} '@example.com', 'Ava', 'Smith', 'Active', 'Weekly', "
            f"'Local Harvest Box', {_minutes(kind, 'i')}, {true}, {true}, {_minutes(kind, 'i')}, {_minutes(kind, 'i')}",
            customers,
        )
        if log_rows:
            _insert(
                conn, kind, "system_log", "id, created_at, customer_id, type, message, data",
                f"i, {_minutes(kind, 'i')}, (i % {customers}) + 1, {pick_type}, 'Benchmark log entry', "
                f"'{{\"order_id\": ' {concat} i {concat} ', \"box\": \"Local Harvest Box\", \"price\": \"39.95\"}}'",
                log_rows,
            )
        if orders:
            _insert(
                conn, kind, "orders", "id, customer_id, status, total, created_at, updated_at, delivery_date",
                f"i, (i % {customers}) + 1, {pick_status}, 46.45, {_minutes(kind, 'i')}, {_minutes(kind, 'i + 60')}, NULL",
                orders,
            )
            # Two lines per order: the box and one add-on.
            _insert(
                conn, kind, "order_items",
                "id, order_id, product_id, product_name, quantity, item_price, product_url, image_url, categories",
                "i, (i + 1) / 2, CASE WHEN i % 2 = 1 THEN '712' ELSE '902' END, "
                "CASE WHEN i % 2 = 1 THEN 'Local Harvest Box' ELSE 'Sourdough Loaf' END, 1, "
                "CASE WHEN i % 2 = 1 THEN 39.95 ELSE 6.50 END, 'https://shop.example.com/shop/item/x', "
                "'https://shop.example.com/img/x.jpg', 'Boxes,Organic'",
                orders * 2,
            )


def sqlite_store(folder: Path, name: str, **counts: int) -> tuple[str, Engine]:
    """A filled SQLite store in ``folder``; returns its URL and engine."""
    path = folder / f"{name}.db"
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url, sqlite_wal=False)
    fill_store(engine, **counts)
    return url, engine

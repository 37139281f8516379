"""Planted stores: exact rows for tests that check exact outcomes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert

from kl_sync.db import make_engine
from kl_sync.store.contract import TABLES, customers, metadata, order_items, orders, system_log

T0 = dt.datetime(2024, 5, 15, 12, 35, 32)


def customer(id: int, email: Any = ..., **overrides: Any) -> dict[str, Any]:
    row = {
        "id": id, "email": f"c{id}@example.com" if email is ... else email, "first_name": f"First{id}",
        "last_name": f"Last{id}", "status": "Active", "schedule": "Weekly", "box": "Local Harvest Box",
        "signup_date": T0, "email_subscribed": True, "has_filled_out_profile": True,
        "created_at": T0, "updated_at": T0,
    }
    row.update(overrides)
    return row


def log(id: int, type: str, customer_id: int | None, when: dt.datetime = T0, data: str | None = None, message: str = "msg") -> dict[str, Any]:
    return {"id": id, "created_at": when, "customer_id": customer_id, "type": type, "message": message, "data": data}


def order(id: int, customer_id: int | None, status: str = "Placed", total: str = "47.95",
          created: dt.datetime = T0, updated: dt.datetime | None = None) -> dict[str, Any]:
    return {"id": id, "customer_id": customer_id, "status": status, "total": Decimal(total), "created_at": created,
            "updated_at": updated or created, "delivery_date": (created + dt.timedelta(days=6)).date()}


def item(id: int, order_id: int, name: str = "Local Harvest Box", qty: int = 1, price: str = "47.95") -> dict[str, Any]:
    return {"id": id, "order_id": order_id, "product_id": f"P{id}", "product_name": name, "quantity": qty,
            "item_price": Decimal(price), "product_url": f"https://shop.example.com/p/{id}",
            "image_url": f"https://shop.example.com/i/{id}.jpg", "categories": "Boxes,Organic"}


def plant(url: str, *, customers_rows=(), log_rows=(), order_rows=(), item_rows=()) -> Engine:
    engine = make_engine(url, sqlite_wal=False)
    metadata.create_all(engine, tables=list(TABLES))
    with engine.begin() as conn:
        for table, rows in ((customers, customers_rows), (system_log, log_rows), (orders, order_rows), (order_items, item_rows)):
            if rows:
                conn.execute(insert(table), list(rows))
    return engine


def add(engine: Engine, table_name: str, rows: list[dict[str, Any]]) -> None:
    table = {t.name: t for t in TABLES}[table_name]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)


def update(engine: Engine, table_name: str, row_id: int, **values: Any) -> None:
    table = {t.name: t for t in TABLES}[table_name]
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == row_id).values(**values))

"""The store contract: the four tables (or views) kl-sync reads, as SQLAlchemy Core.

kl-sync only ever SELECTs from these. A shop whose schema differs creates views with these names
and columns; the README documents what each column means and which values it takes. Timestamps are
naive, in the store's time zone (``KL_SYNC_STORE_TIMEZONE``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

from kl_sync.db import Id

metadata = MetaData()

#: Customer statuses the store uses; other values are tolerated and passed through.
CUSTOMER_STATUSES = ("Pending", "Active", "Stopped", "Dead")
SCHEDULES = ("Weekly", "Biweekly", "Monthly")
ORDER_STATUSES = ("Placed", "Cancelled", "Completed")


customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320)),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("status", String(32), nullable=False),
    Column("schedule", String(16)),
    Column("box", String(200)),
    Column("signup_date", DateTime),
    Column("email_subscribed", Boolean, nullable=False),
    Column("has_filled_out_profile", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True),
    Column("customer_id", Id),
    Column("status", String(16), nullable=False),
    Column("total", Numeric(12, 2), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("delivery_date", Date),
    Index("ix_orders_updated_at_id", "updated_at", "id"),
)

order_items = Table(
    "order_items",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", Id, nullable=False, index=True),
    Column("product_id", String(64), nullable=False),
    Column("product_name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("item_price", Numeric(12, 2), nullable=False),
    Column("product_url", String(500)),
    Column("image_url", String(500)),
    #: Comma-separated category names, e.g. "Boxes,Organic".
    Column("categories", String(500)),
)

system_log = Table(
    "system_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("customer_id", Id),
    Column("type", String(64), nullable=False),
    Column("message", Text),
    #: JSON text or NULL; contact-form rows without a customer carry {"email": ...} here.
    Column("data", Text),
)

TABLES = (customers, orders, order_items, system_log)

"""A realistic, deterministic demo store: years of a subscription produce-box shop's history.

The same ``seed`` and ``end`` always give the same rows. Besides the happy paths it plants what real
shops have: sign-ups that stall after step 1 (missed signups), Dead and unsubscribed customers,
cancelled and completed orders, failed payments, contact-form messages from strangers, and a small
share of messy rows (missing or malformed e-mails, unknown log types, log rows for deleted customers,
broken JSON, odd whitespace and unicode in names). Rows are written in bulk, chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select

from kl_sync.chunks import chunks
from kl_sync.db import driver_insert
from kl_sync.store.contract import TABLES, customers, metadata, order_items, orders, system_log

BOXES = {
    "Only Organic Small Box Fruits & Veggies": ("705", Decimal("47.95")),
    "Only Organic Medium Box Fruits & Veggies": ("706", Decimal("59.95")),
    "Only Organic Large Box Fruits & Veggies": ("707", Decimal("74.95")),
    "Local Harvest Box": ("712", Decimal("39.95")),
    "Fruit Lovers Box": ("718", Decimal("44.95")),
}
ADD_ONS = {
    "Free-Range Eggs (dozen)": ("901", Decimal("6.50"), "Add-ons,Dairy & Eggs"),
    "Sourdough Loaf": ("902", Decimal("7.25"), "Add-ons,Bakery"),
    "Fair-Trade Coffee 12oz": ("903", Decimal("13.00"), "Add-ons,Pantry"),
    "Raw Honey 16oz": ("904", Decimal("11.50"), "Add-ons,Pantry"),
}
SCHEDULE_DAYS = {"Weekly": 7, "Biweekly": 14, "Monthly": 28}
FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoë", "José", "Chloé", "Ethan", "Priya", "Omar", "Hannah",
         "Lucas", "Sofía", "Kenji", "Amara", "Björn", "Nia", "Mateo", "Grace", "Ibrahim", "李", "Ana"]
LAST = ["Smith", "Garcia", "Nguyen", "O'Brien", "Müller", "Kowalski", "Johnson", "Patel", "Rossi",
        "Dubois", "Kim", "Brown", "Silva", "Andersson", "McGee", "Haddad", "Okafor", "Lee"]
IGNORED_LOG_TYPES = ["login", "password.reset", "admin.note", "box.changed", "address.updated"]
SITE = "https://shop.example.com"


@dataclass
class GeneratedCounts:
    customers: int = 0
    orders: int = 0
    order_items: int = 0
    system_log: int = 0
    by_log_type: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.customers + self.orders + self.order_items + self.system_log


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "x"


def _email(rng: random.Random, i: int, first: str, last: str) -> str | None:
    roll = rng.random()
    if roll < 0.015:
        return None  # never gave one (phone sign-up)
    if roll < 0.025:
        return rng.choice([f"{_slug(first)}.{_slug(last)}{i}@", f"{_slug(first)}{i} at example.com", f"{_slug(first)}@@example.com", "n/a"])
    if roll < 0.035:
        return f"  {_slug(first).upper()}.{_slug(last)}{i}@Example.COM "  # valid once trimmed and folded
    return f"{_slug(first)}.{_slug(last)}{i}@example.com"


def _name(rng: random.Random, names: list[str]) -> str:
    name = rng.choice(names)
    if rng.random() < 0.02:
        name = f"  {name} "  # odd whitespace a form let through
    return name


class _Builder:
    def __init__(self, seed: int, end: dt.datetime, years: float) -> None:
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - dt.timedelta(days=365 * years)
        self.customers: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.order_id = 0
        self.item_id = 0

    def _when(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = max((end - start).total_seconds(), 1.0)
        return (start + dt.timedelta(seconds=self.rng.uniform(0, span))).replace(microsecond=0)

    def _log(self, when: dt.datetime, customer_id: int | None, type_: str, message: str, data: Any = None) -> None:
        if when > self.end:
            return
        text = data if isinstance(data, str) or data is None else json.dumps(data)
        self.log.append({"created_at": when, "customer_id": customer_id, "type": type_, "message": message, "data": text})

    def customer(self, cid: int) -> None:
        rng = self.rng
        first, last = _name(rng, FIRST), _name(rng, LAST)
        email = _email(rng, cid, first.strip(), last.strip())
        created = self._when(self.start, self.end)
        box_name = rng.choice(list(BOXES))
        row = {
            "id": cid, "email": email, "first_name": first, "last_name": last, "status": "Pending",
            "schedule": None, "box": None, "signup_date": None, "email_subscribed": rng.random() > 0.08,
            "has_filled_out_profile": False, "created_at": created, "updated_at": created,
        }
        # A few percent of sign-up starts never reached the server log (the browser still saw them).
        if rng.random() > 0.04:
            self._log(created, cid, "started.signup", f"Customer started sign-up with {box_name}",
                      {"box": box_name, "product_id": BOXES[box_name][0], "price": str(BOXES[box_name][1])})
        if rng.random() < 0.05:
            self._log(self._when(created, self.end), cid, "contact.form", "Question about delivery areas",
                      {"email": email, "subject": "Delivery areas"})
        if rng.random() < 0.27:  # stalled after step 1: a missed signup
            self.customers.append(row)
            return
        signup = created + dt.timedelta(minutes=rng.randint(2, 60 * 24 * 3))
        if signup > self.end:
            self.customers.append(row)
            return
        schedule = rng.choices(list(SCHEDULE_DAYS), weights=[6, 3, 1])[0]
        row.update(status="Active", schedule=schedule, box=box_name, signup_date=signup,
                   has_filled_out_profile=rng.random() < 0.6, updated_at=signup)
        stop_at = None
        fate = rng.random()
        if fate < 0.22:
            stop_at = self._when(signup + dt.timedelta(days=10), self.end + dt.timedelta(days=200))
            if stop_at <= self.end:
                row.update(status="Stopped", updated_at=stop_at)
                if rng.random() > 0.04:  # same gap as sign-ups: some cancellations only the browser saw
                    self._log(stop_at, cid, "cancelled", "Customer cancelled their account",
                              {"reason": rng.choice(["moving", "too much food", "price", "travel", None])})
            else:
                stop_at = None
        elif fate < 0.26:
            stop_at = self._when(signup + dt.timedelta(days=20), self.end)
            row.update(status="Dead", updated_at=stop_at)
        if rng.random() < 0.05:
            self._log(self._when(signup, self.end), cid, "referral.credit", "Referral credit applied",
                      {"amount": "10.00", "referred_customer_id": rng.randint(1, cid + 5)})
        self._orders(cid, signup, schedule, box_name, stop_at or self.end)
        self.customers.append(row)

    def _orders(self, cid: int, signup: dt.datetime, schedule: str, box_name: str, until: dt.datetime) -> None:
        rng = self.rng
        step = dt.timedelta(days=SCHEDULE_DAYS[schedule])
        created = signup + dt.timedelta(minutes=rng.randint(1, 30))  # the first order, before the cutoff
        while created <= until and created <= self.end:
            self.order_id += 1
            oid = self.order_id
            billed = created + dt.timedelta(days=rng.randint(2, 4), hours=rng.randint(0, 6))
            delivery = (created + dt.timedelta(days=rng.randint(5, 8))).date()
            status, updated = "Placed", created
            if billed <= self.end:
                if rng.random() < 0.06:
                    status, updated = "Cancelled", created + dt.timedelta(hours=rng.randint(1, 48))
                elif rng.random() < 0.03:
                    self._log(billed, cid, "failed.payment", "Automatic payment failed",
                              {"order_id": oid, "decline_code": rng.choice(["insufficient_funds", "expired_card"])})
                    status, updated = "Cancelled", billed + dt.timedelta(hours=1)
                else:
                    status, updated = "Completed", billed
                    self._log(billed + dt.timedelta(hours=rng.randint(12, 30)), cid, "shipping.email",
                              "Shipping information e-mailed", {"order_id": oid, "delivery_date": delivery.isoformat()})
            updated = min(updated, self.end)
            product_id, price = BOXES[box_name]
            lines = [(product_id, box_name, 1, price, "Boxes")]
            for add_on in rng.sample(list(ADD_ONS), k=rng.choice([0, 0, 1, 2])):
                pid, aprice, cats = ADD_ONS[add_on]
                lines.append((pid, add_on, rng.randint(1, 2), aprice, cats))
            total = Decimal(0)
            for pid, name, qty, unit, cats in lines:
                self.item_id += 1
                total += unit * qty
                self.items.append({
                    "id": self.item_id, "order_id": oid, "product_id": pid, "product_name": name,
                    "quantity": qty, "item_price": unit,
                    "product_url": f"{SITE}/shop/item/{_slug(name)}", "image_url": f"{SITE}/img/{pid}.jpg",
                    "categories": cats,
                })
            self.orders.append({"id": oid, "customer_id": cid, "status": status, "total": total,
                                "created_at": created, "updated_at": updated, "delivery_date": delivery})
            created += step

    def noise(self, n_customers: int) -> None:
        rng = self.rng
        for _ in range(max(3, n_customers // 15)):  # strangers writing in through the contact form
            who = rng.choice(["visitor", "lead", "press"])
            email = rng.choice([f"{who}{rng.randint(1, 9999)}@mail.example.org", f"{who}-no-email", None])
            data: Any = {"email": email, "subject": "Do you deliver to my area?"} if email else {"subject": "Hi"}
            self._log(self._when(self.start, self.end), None, "contact.form", "Contact form message", data)
        for _ in range(max(2, n_customers // 20)):
            self._log(self._when(self.start, self.end), rng.randint(1, n_customers), rng.choice(IGNORED_LOG_TYPES), "Not synced", None)
        for _ in range(max(1, n_customers // 100)):  # customers deleted since
            self._log(self._when(self.start, self.end), n_customers + rng.randint(1000, 9000), "failed.payment",
                      "Automatic payment failed", {"order_id": None})
        for _ in range(max(1, n_customers // 200)):  # a log writer bug: broken JSON
            self._log(self._when(self.start, self.end), rng.randint(1, n_customers), "referral.credit",
                      "Referral credit applied", '{"amount": "10.00", ')


def generate_rows(customers_count: int, seed: int, end: dt.datetime, years: float = 2.0) -> _Builder:
    builder = _Builder(seed, end.replace(microsecond=0), years)
    for cid in range(1, customers_count + 1):
        builder.customer(cid)
    builder.noise(customers_count)
    # The log's ids are monotonic in time, as a real append-only log's are.
    builder.log.sort(key=lambda row: row["created_at"])
    for i, row in enumerate(builder.log, start=1):
        row["id"] = i
    return builder


def default_end() -> dt.datetime:
    """The demo's 'now': the start of the current hour (UTC), so recent events are not backfills."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def _sqlite_value(value: Any) -> Any:
    # The text forms SQLAlchemy's SQLite types store and parse back.
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]], chunk_size: int) -> None:
    """A plain DBAPI executemany: the generator's rows are already typed, so skip per-row bind
    processing (it halves the time on SQLite; psycopg and PyMySQL batch executemany themselves)."""
    if not rows:
        return
    names = list(rows[0])
    sqlite = conn.dialect.name == "sqlite"
    into, one_row = driver_insert(conn.dialect, table, names)
    sql = into + one_row
    for chunk in chunks(rows, chunk_size):
        if sqlite:
            params = [tuple(_sqlite_value(row[n]) for n in names) for row in chunk]
        else:
            params = [tuple(row[n] for n in names) for row in chunk]
        conn.exec_driver_sql(sql, params)


def generate_store(
    engine: Engine,
    *,
    customers_count: int,
    seed: int = 1,
    end: dt.datetime | None = None,
    years: float = 2.0,
    replace: bool = False,
    chunk_size: int = 10_000,
) -> GeneratedCounts:
    """Create the contract tables in ``engine`` and fill them. Refuses a non-empty store unless ``replace``."""
    if replace:
        metadata.drop_all(engine, tables=list(TABLES))
    metadata.create_all(engine, tables=list(TABLES))
    with engine.connect() as conn:
        existing = sum(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES)
    if existing:
        raise ValueError(f"the store at {engine.url.render_as_string(hide_password=True)} already has {existing} rows; pass replace=True (--replace)")
    built = generate_rows(customers_count, seed, end or default_end(), years)
    with engine.begin() as conn:
        for table, rows in ((customers, built.customers), (orders, built.orders),
                            (order_items, built.items), (system_log, built.log)):
            _bulk_insert(conn, table, rows, chunk_size)
    counts = GeneratedCounts(len(built.customers), len(built.orders), len(built.items), len(built.log))
    for row in built.log:
        counts.by_log_type[row["type"]] = counts.by_log_type.get(row["type"], 0) + 1
    return counts

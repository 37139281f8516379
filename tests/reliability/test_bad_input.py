"""3. Bad input: property-based store rows — null and malformed e-mails, unknown types, timestamps far
in the past and future, huge and binary-looking messages, unicode, broken JSON data, orders without
items or customers. Nothing crashes; every bad row is dead-lettered with a reason a person can act on
(or, for a log type that is not tracked, ignored as documented); every good row is sent."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.app.run import run_sync
from kl_sync.settings import DEFAULT_LOG_METRICS
from kl_sync.state.migrate import open_state
from kl_sync import state as state_store
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log
from tests.reliability.helpers import settings_for

KEY = "pk_bad_input"
NOW = dt.datetime(2026, 11, 1, 12, 0)
STATUSES = ("Active", "Pending", "Stopped", "Dead")
GOOD_EMAIL = re.compile(r"^[a-z0-9]+@example\.com$")
TRACKED = tuple(DEFAULT_LOG_METRICS)

good_emails = st.builds(lambda n: f"c{n}@example.com", st.integers(0, 10**6))
bad_emails = st.one_of(
    st.none(), st.just(""), st.just("   "), st.just("no-at-sign"), st.just("a@b"), st.just("two@@example.com"),
    st.just("ü@例え.テスト"), st.just("x" * 400 + "@example.com"), st.text(max_size=30),
)
timestamps = st.one_of(
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 10, 31)),  # ordinary
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(1970, 1, 1)),       # far past
    st.datetimes(min_value=dt.datetime(2100, 1, 1), max_value=dt.datetime(9999, 12, 31)),  # far future
)
messages = st.one_of(
    st.none(), st.text(max_size=200), st.just("\x00\x01\x02\xff\xfe binary-looking \x7f"),
    st.just("🎉 ünïcödé ✓ " * 50), st.just("m" * 300_000),
)
json_data = st.one_of(
    st.none(), st.just(""), st.just("{not json"), st.just("[1, 2"), st.just("null"), st.just("[1, 2, 3]"),
    st.just('"a string"'), st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3).map(json.dumps),
    st.just(json.dumps({"blob": "b" * 150_000})),
)


@st.composite
def stores(draw):
    """A small store of mostly broken rows, and the ids of the rows that are entirely good."""
    n_customers = draw(st.integers(1, 5))
    people = []
    for cid in range(1, n_customers + 1):
        good = draw(st.booleans())
        people.append({
            "id": cid, "email": draw(good_emails if good else bad_emails),
            "first_name": draw(st.one_of(st.none(), st.text(max_size=20))), "last_name": "Ng",
            "status": draw(st.sampled_from(STATUSES)) if good else draw(st.one_of(st.sampled_from(STATUSES), st.text(max_size=12))),
            "schedule": None, "box": None, "signup_date": None, "email_subscribed": True,
            "has_filled_out_profile": False, "created_at": NOW - dt.timedelta(days=30), "updated_at": NOW - dt.timedelta(days=30),
        })
    good_customers = {p["id"] for p in people if p["email"] and GOOD_EMAIL.match(p["email"]) and p["status"] in STATUSES}
    logs, good_logs = [], set()
    for log_id in range(1, draw(st.integers(1, 8)) + 1):
        customer_id = draw(st.one_of(st.none(), st.integers(1, n_customers), st.just(999)))
        row = {"id": log_id, "created_at": draw(timestamps), "customer_id": customer_id,
               "type": draw(st.one_of(st.sampled_from(TRACKED), st.text(max_size=15))),
               "message": draw(messages), "data": draw(json_data)}
        logs.append(row)
        if (row["type"] in TRACKED and customer_id in good_customers and row["data"] in (None, "")
                and dt.datetime(2025, 1, 1) <= row["created_at"] <= NOW and (row["message"] or "").isascii()
                and len(row["message"] or "") < 1000):
            good_logs.add(log_id)
    shop_orders, items = [], []
    for order_id in range(1, draw(st.integers(0, 4)) + 1):
        created = draw(timestamps)
        shop_orders.append({"id": order_id, "customer_id": draw(st.one_of(st.none(), st.integers(1, n_customers), st.just(999))),
                            "status": draw(st.one_of(st.sampled_from(("Placed", "Cancelled", "Completed")), st.text(max_size=8))),
                            "total": Decimal("12.50"), "created_at": created, "updated_at": created, "delivery_date": None})
        for line in range(draw(st.integers(0, 2))):  # 0: an order without items
            items.append({"id": order_id * 10 + line, "order_id": order_id, "product_id": f"p{line}",
                          "product_name": draw(st.text(min_size=1, max_size=30)), "quantity": draw(st.integers(-1, 3)),
                          "item_price": Decimal("4.25"), "product_url": None, "image_url": None, "categories": None})
    return people, logs, shop_orders, items, good_logs


def _customer(cid, email, status="Active"):
    return {"id": cid, "email": email, "first_name": "Ana", "last_name": "Ng", "status": status, "schedule": None,
            "box": None, "signup_date": None, "email_subscribed": True, "has_filled_out_profile": False,
            "created_at": NOW - dt.timedelta(days=30), "updated_at": NOW - dt.timedelta(days=30)}


def _log(log_id, customer_id, *, type_="shipping.email", created=dt.datetime(2026, 10, 1), message="ok", data=None):
    return {"id": log_id, "created_at": created, "customer_id": customer_id, "type": type_, "message": message, "data": data}


#: One of each kind of bad row next to a good one, whatever the random examples draw.
EVERY_KIND = (
    [_customer(1, "c1@example.com"), _customer(2, None), _customer(3, "not-an-email"), _customer(4, "c4@example.com", "Vanished")],
    [_log(1, 1), _log(2, 2), _log(3, 3), _log(4, 1, data="{broken"), _log(5, 1, created=dt.datetime(9999, 12, 31)),
     _log(6, 1, created=dt.datetime(1, 1, 1)), _log(7, 1, type_="no.such.type"), _log(8, 999), _log(9, 4),
     _log(10, 1, message="\x00\xff" + "m" * 300_000), _log(11, None, type_="contact.form", data='{"email": "ü@例え"}')],
    [{"id": 1, "customer_id": 1, "status": "Placed", "total": Decimal("9.99"), "created_at": NOW, "updated_at": NOW, "delivery_date": None},
     {"id": 2, "customer_id": None, "status": "Placed", "total": Decimal("9.99"), "created_at": NOW, "updated_at": NOW, "delivery_date": None}],
    [],
    {1},
)


@example(store=EVERY_KIND)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(store=stores())
def test_bad_rows_are_dead_lettered_with_a_reason_and_good_rows_are_sent(store, tmp_path: Path) -> None:
    people, logs, shop_orders, items, good_logs = store
    folder = tmp_path / uuid.uuid4().hex[:8]
    store_url = f"sqlite:///{folder / 'store.db'}"
    engine = make_engine(store_url, sqlite_wal=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table, rows in ((customers, people), (system_log, logs), (orders, shop_orders), (order_items, items)):
            if rows:
                conn.execute(table.insert(), rows)
    engine.dispose()

    with running_emulator(folder / "emulator", api_keys=(KEY,)) as emu:
        run_settings = settings_for(store_url, f"sqlite:///{folder / 'state.db'}", emu.base_url, KEY)
        run_sync(run_settings, from_start=True)  # must not raise
        sent = {e["unique_id"] for e in emu.events()}
    with open_state(run_settings.state_url).connect() as conn:
        letters = {d["key"]: d for d in state_store.list_dead_letters(conn)}
        pending = [r for r in state_store.outbox_counts(conn) if r["status"] == "pending"]

    assert pending == []
    for letter in letters.values():
        reason = letter["reason"]
        assert reason.strip() and len(reason) < 4000 and "Traceback" not in reason
    for row in logs:
        key = f"log:{row['id']}"
        if row["id"] in good_logs:
            assert key in sent, (row, letters.get(key))
        elif row["type"] in TRACKED:
            assert (key in sent) != (key in letters), (row, letters.get(key))
        else:
            assert key not in sent and key not in letters  # untracked types are ignored, as documented
    for order in shop_orders:
        placed = f"order:{order['id']}:placed"
        letter_keys = [k for k in letters if k == f"order:{order['id']}" or k.startswith(f"order:{order['id']}:")]
        assert placed in sent or letter_keys, (order, letters)

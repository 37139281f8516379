"""The demo's browser traffic: planned from a real (SQLite) store, deterministic, with twins and loners."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from kl_sync.db import make_engine
from kl_sync.onsite.browser import plan_browser_events
from kl_sync.normalize import normalize_email
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log
from kl_sync.store.generate import generate_store

END = dt.datetime(2026, 3, 1, 12, 0)


@pytest.fixture(scope="module")
def generated_store(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("store") / "store.db"
    engine = make_engine(f"sqlite:///{path}", sqlite_wal=False)
    generate_store(engine, customers_count=200, seed=7, end=END)
    return engine


def _customer(cid: int, email: str | None, status: str = "Pending", *, created: dt.datetime, updated=None, box=None) -> dict:
    return {
        "id": cid, "email": email, "first_name": f"F{cid}", "last_name": f"L{cid}", "status": status,
        "schedule": "Weekly" if box else None, "box": box, "signup_date": created if box else None,
        "email_subscribed": True, "has_filled_out_profile": False, "created_at": created, "updated_at": updated or created,
    }


@pytest.fixture
def planted_store(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'planted.db'}", sqlite_wal=False)
    metadata.create_all(engine)
    t = dt.datetime(2026, 2, 2, 9, 0, 0)
    with engine.begin() as conn:
        conn.execute(insert(customers), [
            _customer(1, "  Ana.Silva@Example.COM ", created=t),  # logged start, no box column yet
            _customer(2, "bo@example.com", created=t),  # start the server log never saw
            _customer(3, "cy@example.com", "Stopped", created=t, updated=t + dt.timedelta(days=30), box="Local Harvest Box"),
            _customer(4, "not an email", created=t),
            _customer(5, None, created=t),
        ])
        conn.execute(insert(orders), [{"id": 1, "customer_id": 3, "status": "Completed", "total": 39.95,
                                        "created_at": t, "updated_at": t, "delivery_date": None}])
        conn.execute(insert(order_items), [{"id": 1, "order_id": 1, "product_id": "712", "product_name": "Local Harvest Box",
                                             "quantity": 1, "item_price": 39.95, "product_url": "https://s.example/box/712",
                                             "image_url": "https://s.example/img/712.jpg", "categories": "Boxes"}])
        conn.execute(insert(system_log), [
            {"id": 1, "created_at": t, "customer_id": 1, "type": "started.signup", "message": "",
             "data": json.dumps({"box": "Local Harvest Box", "product_id": "712", "price": "39.95"})},
            {"id": 2, "created_at": t, "customer_id": 3, "type": "started.signup", "message": "", "data": "{broken"},
        ])
    return engine


def _by_email(events):
    grouped: dict[tuple[str, str], list[dict]] = {}
    for event in events:
        grouped.setdefault((event["profile"]["email"], event["metric"]), []).append(event)
    return grouped


def test_planted_store_gives_browser_events_with_their_boxes_times_and_profiles(planted_store):
    events = plan_browser_events(planted_store, seed=1, tz="America/New_York", site_url="https://s.example", browser_share=1.0)
    grouped = _by_email(events)

    # Customers 4 and 5 have no usable e-mail: a browser cannot identify them.
    assert set(grouped) == {
        ("ana.silva@example.com", "Started Checkout"),
        ("bo@example.com", "Started Checkout"),
        ("cy@example.com", "Started Checkout"),
        ("cy@example.com", "Completed Signup"),  # cy finished signing up; the log has no twin for it
        ("cy@example.com", "Cancelled Account"),
    }
    [done] = grouped[("cy@example.com", "Completed Signup")]
    assert done["properties"] == {"Completed Signup": True}
    assert done["profile"]["properties"] == {"Schedule": "Weekly", "SignUpDate": "2026-02-02T09:00:00-05:00",
                                             "Status": "Active", "HasFilledOutProfile": False}
    [ana] = grouped[("ana.silva@example.com", "Started Checkout")]
    assert ana["profile"] == {"email": "ana.silva@example.com", "first_name": "F1", "last_name": "L1"}
    # The box named in the log row, with the catalog's links from the order lines.
    assert ana["properties"]["Items"][0] == {
        "ProductID": "712", "ProductName": "Local Harvest Box", "Quantity": 1, "ItemPrice": 39.95, "RowTotal": 39.95,
        "ProductURL": "https://s.example/box/712", "ImageURL": "https://s.example/img/712.jpg", "ProductCategories": ["Boxes"],
    }
    assert ana["value"] == 39.95
    started = dt.datetime(2026, 2, 2, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    fired = dt.datetime.fromisoformat(ana["time"])
    assert dt.timedelta(seconds=1) <= fired - started <= dt.timedelta(minutes=30)
    assert ana["unique_id"] == f"1_{int(fired.timestamp())}"
    assert ana["time"].endswith("-05:00")

    [cancel] = grouped[("cy@example.com", "Cancelled Account")]
    # No cancelled log row: the status change (updated_at) dates it.
    assert dt.datetime.fromisoformat(cancel["time"]) - dt.datetime(2026, 3, 4, 9, 0, tzinfo=ZoneInfo("America/New_York")) <= dt.timedelta(minutes=30)
    assert cancel["properties"]["Cancellation Date"] == "2026-03-04T09:00:00-05:00"
    assert cancel["profile"]["properties"] == {"Status": "Stopped"}
    assert "unique_id" not in cancel

    times = [event["time"] for event in events]
    assert times == sorted(times, key=dt.datetime.fromisoformat)


def test_without_server_rows_the_browser_always_fires_and_with_them_only_its_share(planted_store):
    events = plan_browser_events(planted_store, seed=1, tz="UTC", browser_share=0.0)

    # Only the actions the server log missed remain: bo's start and cy's cancellation — and cy's
    # Completed Signup, which only the browser ever tracks.
    assert set(_by_email(events)) == {("bo@example.com", "Started Checkout"), ("cy@example.com", "Cancelled Account"),
                                      ("cy@example.com", "Completed Signup")}


def test_plan_is_deterministic_and_mixes_twins_browser_only_and_server_only(generated_store):
    first = plan_browser_events(generated_store, seed=3, tz="UTC")
    assert plan_browser_events(generated_store, seed=3, tz="UTC") == first
    assert plan_browser_events(generated_store, seed=4, tz="UTC") != first

    with generated_store.connect() as conn:
        people = {row.id: row for row in conn.execute(select(customers))}
        logged = {(row.customer_id, row.type) for row in conn.execute(select(system_log.c.customer_id, system_log.c.type))}
    by_id = {normalize_email(row.email): cid for cid, row in people.items() if normalize_email(row.email)}

    outcome = {"twin": 0, "browser_only": 0, "server_only": 0}
    fired = {(by_id[e["profile"]["email"]], e["metric"]) for e in first}
    completed = {cid for cid, metric in fired if metric == "Completed Signup"}
    assert completed == {cid for cid, row in people.items() if row.signup_date and normalize_email(row.email)}
    for cid, row in people.items():
        if normalize_email(row.email) is None:
            continue
        actions = [("started.signup", "Started Checkout")]
        if row.status == "Stopped":
            actions.append(("cancelled", "Cancelled Account"))
        for server_metric, browser_metric in actions:
            server, browser = (cid, server_metric) in logged, (cid, browser_metric) in fired
            assert server or browser, f"customer {cid}: {browser_metric} is neither logged nor tracked"
            outcome["twin" if server and browser else "server_only" if server else "browser_only"] += 1

    total = sum(outcome.values())
    assert outcome["browser_only"] > 0 and outcome["server_only"] > 0
    assert outcome["twin"] / total > 0.75
    for event in first:
        assert event["profile"]["email"] == normalize_email(event["profile"]["email"])
        if event["metric"] == "Started Checkout":
            assert event["properties"]["Items"], "every generated store has boxes in its catalog"

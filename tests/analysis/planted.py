"""A small planted world for the end-to-end analysis tests: a SQLite store with known customers, and a
running emulator filled the way Klaviyo is in production: server events through the client's
``send_events`` (as the sender does) and browser events through ``/client/events``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.events import send_events
from kl_sync.onsite.browser import plan_browser_events, post_browser_events
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log

API_KEY = "pk_planted_test_key"
PUBLIC_KEY = "PLANT1"
TZ = "America/New_York"
T = dt.datetime(2026, 2, 2, 9, 0, 0)  # a Monday, store-local

BOX = {"box": "Local Harvest Box", "product_id": "712", "price": "39.95"}


def _customer(cid: int, email: str, status: str, *, box: str | None, schedule: str | None, signup: dt.datetime | None,
              created: dt.datetime, updated: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "id": cid, "email": email, "first_name": f"First{cid}", "last_name": f"Last{cid}", "status": status,
        "schedule": schedule, "box": box, "signup_date": signup, "email_subscribed": True,
        "has_filled_out_profile": signup is not None, "created_at": created, "updated_at": updated or created,
    }


#: Who is who in the planted store (customer id -> e-mail).
EMAILS = {
    1: "active@example.com",  # started (logged) and completed
    2: "pending@example.com",  # started (logged), stalled: a missed signup
    3: "browser-only@example.com",  # started; the server log missed it: a missed signup seen only by the browser
    4: "stopped@example.com",  # completed, later cancelled (logged)
}


def build_store(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}", sqlite_wal=False)
    metadata.create_all(engine)
    stop = T + dt.timedelta(days=20)
    with engine.begin() as conn:
        conn.execute(insert(customers), [
            _customer(1, EMAILS[1], "Active", box=BOX["box"], schedule="Weekly", signup=T + dt.timedelta(hours=1), created=T),
            _customer(2, EMAILS[2], "Pending", box=None, schedule=None, signup=None, created=T + dt.timedelta(days=1)),
            _customer(3, EMAILS[3], "Pending", box=None, schedule=None, signup=None, created=T + dt.timedelta(days=8)),
            _customer(4, EMAILS[4], "Stopped", box=BOX["box"], schedule="Monthly", signup=T + dt.timedelta(hours=2),
                      created=T, updated=stop),
        ])
        conn.execute(insert(orders), [{"id": 1, "customer_id": 1, "status": "Completed", "total": 39.95,
                                        "created_at": T, "updated_at": T, "delivery_date": None}])
        conn.execute(insert(order_items), [{"id": 1, "order_id": 1, "product_id": "712", "product_name": BOX["box"],
                                             "quantity": 1, "item_price": 39.95, "product_url": "https://shop.example.com/shop/item/712",
                                             "image_url": "", "categories": "Boxes"}])
        conn.execute(insert(system_log), [
            {"id": 1, "created_at": T, "customer_id": 1, "type": "started.signup", "message": "", "data": json.dumps(BOX)},
            {"id": 2, "created_at": T, "customer_id": 4, "type": "started.signup", "message": "", "data": json.dumps(BOX)},
            {"id": 3, "created_at": T + dt.timedelta(days=1), "customer_id": 2, "type": "started.signup", "message": "", "data": json.dumps(BOX)},
            {"id": 4, "created_at": stop, "customer_id": 4, "type": "cancelled", "message": "", "data": None},
        ])
    return engine


def server_events(store: Engine) -> list[dict[str, Any]]:
    """The store's log rows as the server side sends them: metric = log type, unique_id ``log:<id>``."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(TZ)
    with store.connect() as conn:
        people = {row.id: row for row in conn.execute(select(customers))}
        log = list(conn.execute(select(system_log).order_by(system_log.c.id)))
    events = []
    for row in log:
        person = people[row.customer_id]
        events.append({
            "metric": row.type,
            "time": row.created_at.replace(tzinfo=zone).isoformat(),
            "unique_id": f"log:{row.id}",
            "properties": json.loads(row.data) if row.data else {},
            "profile": {
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "properties": {"Status": person.status, "Schedule": person.schedule, "Box": person.box},
            },
        })
    return events


@dataclass(frozen=True)
class PlantedWorld:
    store_url: str
    base_url: str
    api_key: str
    browser_events: list[dict[str, Any]]


@contextmanager
def planted_world(tmp_path: Path) -> Iterator[PlantedWorld]:
    """The planted store and a running emulator holding its server and browser events."""
    store_path = tmp_path / "store.db"
    store = build_store(store_path)
    browser = plan_browser_events(store, seed=5, tz=TZ, browser_share=1.0)
    with running_emulator(tmp_path / "emulator", api_keys=(API_KEY,), public_key=PUBLIC_KEY) as emulator:
        # Browser first, then the server's sync, as in the demo: the sync leaves profiles at the store's values.
        assert {o.status for o in post_browser_events(emulator.base_url, PUBLIC_KEY, browser)} == {"sent"}
        with KlaviyoClient(API_KEY, emulator.base_url) as client:
            assert {o.status for o in send_events(client, server_events(store))} == {"sent"}
        yield PlantedWorld(f"sqlite:///{store_path}", emulator.base_url, API_KEY, browser)
    store.dispose()

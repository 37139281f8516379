"""A small planted world for the end-to-end analysis tests: a SQLite store with known customers, and a
running emulator filled the way Klaviyo is in production: browser events through ``/client/events``
first, then the server's events through the client's ``send_events`` (as the sender does), then the
suppressions.

The store's times are naive New York times from ``T``, 40 to 71 days before the test runs, so the
notebooks' default window (the last 90 days) holds everyone but the one old starter.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select

from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.client_events import send_client_events
from kl_sync.klaviyo.events import send_events
from kl_sync.klaviyo.suppressions import send_suppressions
from kl_sync.onsite.browser import plan_browser_events, post_browser_events
from kl_sync.onsite.snippets import build_client_events, build_identify, build_started_checkout
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log

API_KEY = "pk_planted_test_key"
PUBLIC_KEY = "PLANT1"
TZ = "America/New_York"
ZONE = ZoneInfo(TZ)
#: Day 0 of the planted store (naive, store-local) and the tests' "now" 40 days later (aware, UTC). Day 0 is
#: the first of a month, so the starts of days 0-10 share one month whatever the date: the funnel's
#: month-by-month sentence (two months of 5 or more starts) never appears on some days and not others.
T = (dt.datetime.now(ZONE) - dt.timedelta(days=40)).replace(day=1, hour=9, minute=0, second=0, microsecond=0, tzinfo=None)
NOW = (T + dt.timedelta(days=40)).replace(tzinfo=ZONE).astimezone(dt.UTC)

BOX = {"box": "Local Harvest Box", "product_id": "712", "price": "39.95"}

#: Who is who in the planted store (customer id -> e-mail).
EMAILS = {
    1: "active@example.com",  # started and completed: no missed signup
    2: "pending@example.com",  # stalled after step 1: a missed signup to win back
    3: "browser-only@example.com",  # stalled; the server log missed the start, the browser saw it
    4: "stopped@example.com",  # completed, later cancelled: missed under the seed's rule, never pushed
    5: "unsubscribed@example.com",  # stalled, unsubscribed in the store (and so suppressed in Klaviyo)
    6: "bounced@example.com",  # stalled, subscribed in the store, but suppressed in Klaviyo
    7: "dead@example.com",  # stalled, and Dead (the shop closed the account)
    8: "old@example.com",  # stalled 140 days ago: outside the last 90 days, inside the whole history
    9: "twice@example.com",  # stalled, and started again four days later
    10: "changed@example.com",  # completed after the sync sent its start: Klaviyo still says Pending
}
#: A browser start for an e-mail the store has no customer for.
STRANGER = "stranger@example.com"
#: Who may get the win-back e-mail (started in the last 90 days, never finished, may be e-mailed).
WIN_BACK = {EMAILS[2], EMAILS[3], EMAILS[9]}
SUPPRESSED = (EMAILS[5], EMAILS[6], EMAILS[7])


def _customer(cid: int, status: str, *, created: dt.timedelta, signup: dt.timedelta | None = None, schedule: str | None = None,
              subscribed: bool = True, updated: dt.timedelta | None = None) -> dict[str, Any]:
    completed = signup is not None
    return {
        "id": cid, "email": EMAILS[cid], "first_name": f"First{cid}", "last_name": f"Last{cid}", "status": status,
        "schedule": schedule if completed else None, "box": BOX["box"] if completed else None,
        "signup_date": T + signup if completed else None, "email_subscribed": subscribed,
        "has_filled_out_profile": completed, "created_at": T + created, "updated_at": T + (updated or signup or created),
    }


DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def build_store(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}", sqlite_wal=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(customers), [
            _customer(1, "Active", created=0 * DAY, signup=HOUR, schedule="Weekly"),
            _customer(2, "Pending", created=1 * DAY),
            _customer(3, "Pending", created=8 * DAY),
            _customer(4, "Stopped", created=0 * DAY, signup=2 * HOUR, schedule="Monthly", updated=20 * DAY),
            _customer(5, "Pending", created=3 * DAY, subscribed=False),
            _customer(6, "Pending", created=4 * DAY),
            _customer(7, "Dead", created=5 * DAY, updated=9 * DAY),
            _customer(8, "Pending", created=-100 * DAY),
            _customer(9, "Pending", created=2 * DAY),
            _customer(10, "Active", created=10 * DAY, signup=11 * DAY, schedule="Weekly"),
        ])
        conn.execute(insert(orders), [{"id": 1, "customer_id": 1, "status": "Completed", "total": 39.95,
                                        "created_at": T, "updated_at": T, "delivery_date": None}])
        conn.execute(insert(order_items), [{"id": 1, "order_id": 1, "product_id": "712", "product_name": BOX["box"],
                                             "quantity": 1, "item_price": 39.95, "product_url": "https://shop.example.com/shop/item/712",
                                             "image_url": "", "categories": "Boxes"}])
        starts = [(1, 0 * DAY), (4, 0 * DAY), (2, 1 * DAY), (5, 3 * DAY), (6, 4 * DAY), (7, 5 * DAY), (8, -100 * DAY),
                  (9, 2 * DAY), (9, 6 * DAY), (10, 10 * DAY)]
        log = [{"created_at": T + at, "customer_id": cid, "type": "started.signup", "message": "", "data": json.dumps(BOX)}
               for cid, at in starts]
        log.append({"created_at": T + 20 * DAY, "customer_id": 4, "type": "cancelled", "message": "", "data": None})
        log.sort(key=lambda row: row["created_at"])
        conn.execute(insert(system_log), [{"id": i, **row} for i, row in enumerate(log, start=1)])
    return engine


def server_events(store: Engine) -> list[dict[str, Any]]:
    """The store's log rows as the server side sends them: metric = log type, unique_id ``log:<id>``,
    the customer's profile as it was when the sync parsed the row (customer 10 had not finished yet)."""
    with store.connect() as conn:
        people = {row.id: row for row in conn.execute(select(customers))}
        log = list(conn.execute(select(system_log).order_by(system_log.c.id)))
    events = []
    for row in log:
        person = people[row.customer_id]
        properties = {"Status": person.status, "Schedule": person.schedule, "Box": person.box}
        if person.id == 10:
            properties = {"Status": "Pending", "Schedule": None, "Box": None}
        events.append({
            "metric": row.type,
            "time": row.created_at.replace(tzinfo=ZONE).isoformat(),
            "unique_id": f"log:{row.id}",
            "properties": json.loads(row.data) if row.data else {},
            "profile": {"email": person.email, "first_name": person.first_name, "last_name": person.last_name,
                        "properties": properties},
        })
    return events


def stranger_events() -> list[dict[str, Any]]:
    """A browser's Started Checkout for an e-mail the store never saved."""
    at = (T + 12 * DAY).replace(tzinfo=ZONE)
    return build_client_events(build_identify(STRANGER) + build_started_checkout(9999, None, at=at, site_url="https://shop.example.com"), at=at)


@dataclass(frozen=True)
class PlantedWorld:
    store_url: str
    base_url: str
    api_key: str
    browser_events: list[dict[str, Any]]
    emulator: Any


@contextmanager
def planted_world(tmp_path: Path) -> Iterator[PlantedWorld]:
    """The planted store and a running emulator holding its browser and server events and suppressions."""
    store_path = tmp_path / "store.db"
    store = build_store(store_path)
    browser = plan_browser_events(store, seed=5, tz=TZ, browser_share=1.0)
    with running_emulator(tmp_path / "emulator", api_keys=(API_KEY,), public_key=PUBLIC_KEY) as emulator:
        # Browser first, then the server's sync, as in the demo: the sync leaves profiles at its values.
        assert {o.status for o in post_browser_events(emulator.base_url, PUBLIC_KEY, browser)} == {"sent"}
        assert {o.status for o in send_client_events(emulator.base_url, PUBLIC_KEY, stranger_events())} == {"sent"}
        with KlaviyoClient(API_KEY, emulator.base_url) as client:
            assert {o.status for o in send_events(client, server_events(store))} == {"sent"}
            assert {o.status for o in send_suppressions(client, list(SUPPRESSED))} == {"sent"}
        yield PlantedWorld(f"sqlite:///{store_path}", emulator.base_url, API_KEY, browser, emulator)
    store.dispose()

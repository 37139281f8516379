import datetime as dt
import json

from sqlalchemy import select

from kl_sync.settings import load_settings
from kl_sync import state as st
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import order_state, outbox
from kl_sync.steps.orders import events_due, process_orders
from tests.planting import T0, add, customer, item, order, plant, update

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(days=3)


def _queued(state):
    with state.connect() as conn:
        return {r.key: json.loads(r.payload) for r in conn.execute(select(outbox.c.key, outbox.c.payload))}


def test_events_due_follows_the_lifecycle():
    assert events_due("Placed", None) == ["Placed Order"]
    assert events_due("Cancelled", None) == ["Placed Order", "Cancelled Order"]
    assert events_due("Completed", None) == ["Placed Order", "Fulfilled Order"]
    assert events_due("Placed", "Placed") == []
    assert events_due("Cancelled", "Placed") == ["Cancelled Order"]
    assert events_due("Completed", "Placed") == ["Fulfilled Order"]
    assert events_due("Cancelled", "Completed") == []


def test_every_order_path(store_url, state_url):
    store = plant(
        store_url,
        customers_rows=[customer(1), customer(2, email="nope"), customer(3, status="Dead")],
        order_rows=[
            order(10, 1, "Placed", "52.45"),
            order(11, 1, "Placed"),
            order(12, 1, "Placed"),
            order(13, 3, "Cancelled", updated=LATER),  # first seen cancelled
            order(14, 1, "Completed", updated=LATER),  # first seen completed
            order(15, 2, "Placed"),  # customer without a usable e-mail
            order(16, None, "Placed"),
        ],
        item_rows=[item(100, 10, qty=1, price="39.95"), item(101, 10, "Sourdough Loaf", qty=2, price="6.25"),
                   item(102, 11), item(103, 12), item(104, 13), item(105, 14), item(106, 15)],
    )
    state = open_state(state_url)
    settings = load_settings(store_timezone="America/Chicago")

    first = process_orders(store, state, settings, now=NOW)
    queued = _queued(state)
    assert first.by_metric == {"Placed Order": 5, "Ordered Product": 6, "Cancelled Order": 1, "Fulfilled Order": 1}
    placed = queued["order:10:placed"]
    assert placed["metric"] == "Placed Order" and placed["value"] == 52.45 and placed["value_currency"] == "USD"
    assert placed["time"] == "2024-05-15T12:35:32-05:00" and placed["unique_id"] == "order:10:placed"
    props = placed["properties"]
    assert props["OrderId"] == "10" and props["ItemNames"] == ["Local Harvest Box", "Sourdough Loaf"]
    assert props["Categories"] == ["Boxes", "Organic"] and props["DeliveryDate"] == "2024-05-21"
    assert props["Items"][1] == {"ProductID": "P101", "ProductName": "Sourdough Loaf", "Quantity": 2, "ItemPrice": 6.25,
                                 "RowTotal": 12.5, "ProductURL": "https://shop.example.com/p/101",
                                 "ImageURL": "https://shop.example.com/i/101.jpg", "ProductCategories": ["Boxes", "Organic"]}
    line = queued["order:10:item:101"]
    assert line["metric"] == "Ordered Product" and line["value"] == 12.5 and line["properties"]["OrderId"] == "10"
    assert queued["order:13:cancelled"]["time"] == "2024-05-18T12:35:32-05:00"
    assert {"order:14:placed", "order:14:fulfilled"} <= set(queued)
    with state.connect() as conn:
        reasons = {d["key"]: d["reason"] for d in st.list_dead_letters(conn)}
    assert reasons == {"order:15": "order 15: customer 2 has a malformed e-mail 'nope'", "order:16": "order 16 has no customer"}

    # Later: 11 is cancelled, 12 completed; 10 untouched. Only the follow-up events are new.
    update(store, "orders", 11, status="Cancelled", updated_at=LATER)
    update(store, "orders", 12, status="Completed", updated_at=LATER)
    add(store, "orders", [order(17, 1, "Placed", created=LATER)])
    add(store, "order_items", [item(107, 17)])
    second = process_orders(store, state, settings, now=NOW)
    assert second.by_metric == {"Cancelled Order": 1, "Fulfilled Order": 1, "Placed Order": 1, "Ordered Product": 1}
    assert {"order:11:cancelled", "order:12:fulfilled", "order:17:placed"} <= set(_queued(state))

    # Nothing changed: nothing new, even re-reading everything from the start.
    assert process_orders(store, state, settings, now=NOW).queued == 0
    assert process_orders(store, state, settings, from_start=True, now=NOW).queued == 0
    with state.connect() as conn:
        states = dict(conn.execute(select(order_state.c.order_id, order_state.c.status)).all())
        assert len(st.list_dead_letters(conn)) == 2
    assert states == {10: "Placed", 11: "Cancelled", 12: "Completed", 13: "Cancelled", 14: "Completed", 17: "Placed"}

"""Realistic outbox payloads of every kind, shaped like ``kl_sync.payloads`` and the store's data."""

from __future__ import annotations

import datetime as dt
from typing import Any

SITE = "https://shop.example.com"
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
EASTERN = dt.timezone(dt.timedelta(hours=-5))
EASTERN_SUMMER = dt.timezone(dt.timedelta(hours=-4))

LOG_METRICS = ("cancelled", "contact.form", "failed.payment", "referral.credit", "shipping.email", "started.signup")
ORDER_METRICS = ("Placed Order", "Cancelled Order", "Fulfilled Order")
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "log_event": LOG_METRICS,
    "order_event": ORDER_METRICS,
    "ordered_product": ("Ordered Product",),
    "profile": (),
    "suppression": (),
    "unsuppression": (),
}

FIRST = ["Ana", "Björn", "Chloé", "Dmitri", "Émile", "Fatima", "Grace", "Hiro", "Ines", "José", None]
LAST = ["Smith", "Øster", "Nguyễn", "O'Brien", "Müller", "García", None]
BOXES = [
    ("705", "Only Organic Small Box Fruits & Veggies", 47.95),
    ("706", "Family Box", 64.5),
    ("707", "Fruit Only Box", 39),
]
ADD_ONS = [("801", "Sourdough Loaf", 6.5, ["Add-ons", "Bakery"]), ("802", "Free-range Eggs", 5.25, ["Add-ons"]),
           ("803", "Local Honey", 11, ["Add-ons", "Pantry"])]
STATUSES = ["Pending", "Active", "Active", "Stopped", "Dead", None]
SCHEDULES = ["Weekly", "Biweekly", "Monthly"]


def _when(i: int) -> dt.datetime:
    moment = dt.datetime(2020, 5, 15, 12, 35, 32) + dt.timedelta(minutes=17 * i, seconds=i)
    return moment.replace(tzinfo=EASTERN_SUMMER if 3 <= moment.month <= 10 else EASTERN)


def profile(i: int) -> dict[str, Any]:
    status = STATUSES[i % len(STATUSES)]
    signed_up = status in {"Active", "Stopped", "Dead"}
    return {
        # Every seventh an unusual address Klaviyo takes (an apostrophe, a tag, a sub-domain); not a
        # non-ASCII one: Klaviyo (and so the emulator and the suites) refuses those.
        "email": f"customer.{i}@example.com" if i % 7 else f"o'brien+box.{i}@mail.example.co.uk",
        "external_id": str(1000 + i),
        "first_name": FIRST[i % len(FIRST)],
        "last_name": LAST[i % len(LAST)],
        "properties": {
            "Schedule": SCHEDULES[i % 3] if signed_up else None,
            "Status": status,
            "Box": BOXES[i % 3][1] if signed_up else None,
            "SignUpDate": _when(i).isoformat() if signed_up else None,
            "HasFilledOutProfile": bool(i % 2),
        },
    }


def log_event(i: int) -> dict[str, Any]:
    metric = LOG_METRICS[i % len(LOG_METRICS)]
    data: dict[str, Any] = {
        "started.signup": {"box": BOXES[i % 3][1], "product_id": BOXES[i % 3][0], "price": str(BOXES[i % 3][2])},
        "contact.form": {"email": f"customer.{i}@example.com", "subject": "Delivery areas"},
        "failed.payment": {"order_id": 1000 + i, "decline_code": "expired_card"},
        "referral.credit": {"amount": "10.00", "referred_customer_id": i + 3},
        "shipping.email": {"order_id": 1000 + i, "delivery_date": "2024-05-20"},
        "cancelled": {"reason": None if i % 2 else "moving"},
    }[metric]
    return {
        "metric": metric,
        "time": _when(i).isoformat(),
        "unique_id": f"log:{i}",
        "backfill": i % 3 != 0,
        "properties": {"message": f"{metric} happened", "data": data},
        "profile": profile(i),
    }


def _items(i: int) -> list[dict[str, Any]]:
    product_id, name, price = BOXES[i % 3]
    lines = [(product_id, name, 1, price, ["Boxes"])]
    for product_id, add_on, unit, categories in ADD_ONS[: i % 3]:
        lines.append((product_id, add_on, 1 + i % 2, unit, categories))
    return [
        {
            "ProductID": pid, "ProductName": pname, "Quantity": qty, "ItemPrice": unit,
            "RowTotal": round(qty * unit, 2), "ProductURL": f"{SITE}/shop/item/{pid}",
            "ImageURL": f"{SITE}/img/{pid}.jpg" if i % 5 else "", "ProductCategories": cats,
        }
        for pid, pname, qty, unit, cats in lines
    ]


def order_event(i: int) -> dict[str, Any]:
    items = _items(i)
    metric = ORDER_METRICS[i % 3]
    return {
        "metric": metric,
        "time": _when(i).isoformat(),
        "unique_id": f"order:{i}:{metric.split()[0].lower()}",
        "backfill": True,
        "value": round(sum(item["RowTotal"] for item in items), 2),
        "value_currency": "USD",
        "properties": {
            "OrderId": i,
            "ItemNames": [item["ProductName"] for item in items],
            "Categories": sorted({c for item in items for c in item["ProductCategories"]}),
            "Items": items,
            "DeliveryDate": (_when(i) + dt.timedelta(days=6)).date().isoformat(),
        },
        "profile": profile(i),
    }


def ordered_product(i: int) -> dict[str, Any]:
    item = _items(i)[i % 2 if i % 3 else 0]
    return {
        "metric": "Ordered Product",
        "time": _when(i).isoformat(),
        "unique_id": f"order:{i // 2}:item:{i}",
        "backfill": False,
        "value": item["RowTotal"],
        "value_currency": "USD",
        "properties": {"OrderId": i // 2, **item},
        "profile": profile(i),
    }


def suppression(i: int) -> dict[str, Any]:
    return {"email": f"customer.{i}@example.com"}


FACTORIES = {
    "log_event": log_event,
    "order_event": order_event,
    "ordered_product": ordered_product,
    "profile": profile,
    "suppression": suppression,
    "unsuppression": suppression,
}


def batch(kind: str, n: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``n`` good rows of one kind; keys follow the outbox's conventions."""
    make = FACTORIES[kind]
    rows = []
    for i in range(start, start + n):
        payload = make(i)
        key = payload.get("unique_id") or f"{kind}:{i}"
        rows.append((key, payload))
    return rows

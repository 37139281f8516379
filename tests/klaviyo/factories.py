"""Payloads for the Klaviyo client tests, shaped like the outbox rows kl-sync sends."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kl_sync.payloads import EventPayload, ProfilePayload

START = dt.datetime(2024, 5, 15, 12, 35, 32, tzinfo=dt.timezone(dt.timedelta(hours=-4)))


def profile(n: int, **overrides: Any) -> ProfilePayload:
    payload: ProfilePayload = {
        "email": f"customer{n}@example.com",
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "properties": {
            "Schedule": "Weekly",
            "Status": "Active",
            "Box": "Only Organic Small Box",
            "SignUpDate": "2020-05-15 12:35:32",
            "HasFilledOutProfile": True,
        },
    }
    payload.update(overrides)  # type: ignore[typeddict-item]
    return payload


def event(n: int, *, customer: int | None = None, metric: str = "Placed Order", **overrides: Any) -> EventPayload:
    """Event ``n`` of customer ``customer`` (default: its own customer ``n``)."""
    payload: EventPayload = {
        "metric": metric,
        "time": (START + dt.timedelta(minutes=n)).isoformat(),
        "unique_id": f"order:{n}:placed",
        "properties": {"OrderId": str(n), "ItemNames": ["Only Organic Small Box"], "Categories": ["Boxes"]},
        "profile": profile(n if customer is None else customer),
        "value": 47.95,
        "value_currency": "USD",
    }
    payload.update(overrides)  # type: ignore[typeddict-item]
    return payload

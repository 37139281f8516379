"""Queue synthetic events in a state database, shaped exactly as the parse step queues them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from kl_sync.payloads import EventPayload
from kl_sync.settings import DEFAULT_LOG_METRICS
from kl_sync import state as state_store

_METRICS = tuple(sorted(DEFAULT_LOG_METRICS.values()))
_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def bench_event(i: int, *, events_per_profile: int = 5) -> EventPayload:
    """Event ``i``: one of the log metrics, for profile ``i // events_per_profile``, a backfill."""
    customer = i // events_per_profile
    return {
        "metric": _METRICS[i % len(_METRICS)],
        "time": (_START + dt.timedelta(minutes=i)).isoformat(),
        "unique_id": f"log:{i}",
        "properties": {"box": "Local Harvest Box", "price": "39.95", "message": "Benchmark log entry",
                       "log_id": i, "log_type": _METRICS[i % len(_METRICS)]},
        "profile": {
            "email": f"customer{customer}@example.com",
            "first_name": "Ava",
            "last_name": "Smith",
            "properties": {"Schedule": "Weekly", "Status": "Active", "Box": "Local Harvest Box",
                           "SignUpDate": "2024-01-01T00:00:00+00:00", "HasFilledOutProfile": True},
        },
        "backfill": True,
    }


def queue_events(state: Engine, count: int, *, start: int = 0, chunk: int = 20_000) -> None:
    for first in range(start, start + count, chunk):
        last = min(first + chunk, start + count)
        items: list[Any] = [state_store.OutboxItem(f"log:{i}", "log_event", bench_event(i)) for i in range(first, last)]
        with state.begin() as conn:
            state_store.enqueue(conn, items)

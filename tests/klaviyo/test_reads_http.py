"""Reading back over real HTTP: cursor pages followed to the end, filters, flat rows and DataFrames."""

from __future__ import annotations

import datetime as dt

import pytest

from kl_sync.emulator import EmulatorHandle
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.events import send_events
from kl_sync.klaviyo.profiles import send_profiles
from kl_sync.klaviyo.reads import (
    EVENT_COLUMNS,
    events_frame,
    iter_events,
    iter_metrics,
    iter_profiles,
    profiles_frame,
)
from tests.klaviyo.factories import START, event, profile


@pytest.fixture
def account(client: KlaviyoClient) -> list:
    """25 Placed Order events over 5 customers and 5 Fulfilled Order events for customer 0."""
    events = [event(n, customer=n % 5) for n in range(25)]
    events += [event(100 + n, customer=0, metric="Fulfilled Order", unique_id=f"order:{n}:fulfilled")
               for n in range(5)]
    assert {o.status for o in send_events(client, events)} == {"sent"}
    return events


def get_requests(emu: EmulatorHandle, path: str) -> list[dict]:
    return [e for e in emu.journal() if e["method"] == "GET" and e["path"].rstrip("/") == path]


def test_iter_events_follows_cursor_pages_to_the_end(
    emu: EmulatorHandle, client: KlaviyoClient, account: list
) -> None:
    rows = list(iter_events(client, page_size=7))
    assert len(rows) == 30
    assert len(get_requests(emu, "/api/events")) == 5  # 7 + 7 + 7 + 7 + 2
    assert len({row["id"] for row in rows}) == 30
    assert [row["datetime"] for row in rows] == sorted(row["datetime"] for row in rows)
    assert set(rows[0]) == set(EVENT_COLUMNS)


def test_iter_events_flattens_metric_profile_value_and_unique_id(client: KlaviyoClient, account: list) -> None:
    rows = {row["unique_id"]: row for row in iter_events(client, metric_name="Placed Order", page_size=10)}
    assert len(rows) == 25
    row = rows["order:7:placed"]
    assert row["metric"] == "Placed Order"
    assert row["email"] == "customer2@example.com"
    assert row["value"] == 47.95
    assert row["properties"] == account[7]["properties"]
    assert dt.datetime.fromisoformat(row["datetime"]) == START + dt.timedelta(minutes=7)
    assert row["profile_id"] and row["metric_id"]


def test_iter_events_filters(client: KlaviyoClient, account: list) -> None:
    fulfilled = list(iter_events(client, metric_name="Fulfilled Order"))
    assert sorted(r["unique_id"] for r in fulfilled) == [f"order:{n}:fulfilled" for n in range(5)]
    assert list(iter_events(client, metric_name="No Such Metric")) == []
    profile_id = fulfilled[0]["profile_id"]
    mine = list(iter_events(client, profile_id=profile_id))
    assert len(mine) == 10 and {r["email"] for r in mine} == {"customer0@example.com"}
    window = list(iter_events(client, since=START + dt.timedelta(minutes=5), until=START + dt.timedelta(minutes=10)))
    assert sorted(r["unique_id"] for r in window) == [f"order:{n}:placed" for n in range(5, 10)]
    with pytest.raises(ValueError, match="offset"):
        list(iter_events(client, since=dt.datetime(2024, 1, 1)))


def test_iter_metrics_and_iter_profiles(emu: EmulatorHandle, client: KlaviyoClient, account: list) -> None:
    assert sorted(m["name"] for m in iter_metrics(client)) == ["Fulfilled Order", "Placed Order"]
    send_profiles(client, [profile(n) for n in range(5, 130)])
    everyone = list(iter_profiles(client))
    assert len(everyone) == 130
    assert len(get_requests(emu, "/api/profiles")) == 2  # 100 + 30
    (one,) = iter_profiles(client, "customer42@example.com")
    assert one["first_name"] == "First42" and one["properties"]["Schedule"] == "Weekly"


def test_frames_for_the_notebooks(client: KlaviyoClient, account: list) -> None:
    events = events_frame(client, metric_name="Placed Order")
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert len(events) == 25
    assert str(events["datetime"].dtype).startswith("datetime64") and events["datetime"].dt.tz is not None
    profiles = profiles_frame(client)
    assert len(profiles) == 5
    assert {"email", "Schedule", "Status", "Box"} <= set(profiles.columns)
    assert set(profiles["Status"]) == {"Active"}
    empty = events_frame(client, metric_name="No Such Metric")
    assert len(empty) == 0 and list(empty.columns) == list(EVENT_COLUMNS)

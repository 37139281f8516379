"""The benchmarks' own code at toy sizes: the floor arithmetic, the synthetic stores, and the raw
statements queuing exactly the rows the steps queue. No timing is asserted (benchmarks are not tests);
the send, overhead, validation and verify benchmarks are left to ``make bench`` (they import GX, start
Prefect or start emulator processes, tens of seconds before any work)."""

from __future__ import annotations

import json

import pytest

from benchmarks import harness, memory, steps
from benchmarks.send import floor_seconds, requests_floor_seconds


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "WORK_DIR", tmp_path / "bench")


def test_floor_of_bulk_events_follows_the_windows():
    # 200 requests: 150 in the first steady window, then 50 more in 5 bursts of 10 (4 burst gaps).
    assert floor_seconds(200_000, endpoint="bulk_create_events", scale=1.0) == 64.0
    assert floor_seconds(200_000, endpoint="bulk_create_events", scale=2.0) == 32.0
    assert floor_seconds(10_000, endpoint="bulk_create_events", scale=1.0) == 0.0  # one burst
    assert floor_seconds(10_001, endpoint="bulk_create_events", scale=1.0) == 1.0
    assert floor_seconds(150_001, endpoint="bulk_create_events", scale=1.0) == 60.0


def test_floor_of_one_request_per_event():
    assert floor_seconds(3_500, endpoint="create_event", scale=1.0) == 9.0
    assert floor_seconds(3_501, endpoint="create_event", scale=1.0) == 60.0


def test_floor_of_reading_events_back():
    assert requests_floor_seconds(350, endpoint="get_events", scale=1.0) == 0.0  # one burst
    assert requests_floor_seconds(351, endpoint="get_events", scale=1.0) == 1.0
    assert requests_floor_seconds(3_501, endpoint="get_events", scale=1.0) == 60.0



def test_parse_and_orders_queue_what_the_raw_statements_queue(tmp_path):
    parse = steps.run_parse(1_500, repeat=1, postgres=False, customers=100)
    orders = steps.run_orders(300, repeat=1, postgres=False, customers=100)
    assert parse.details["sqlite"]["queued"] == 1_500
    # 300 orders: each placed, 2 items each, 3 in 4 reach a final status.
    assert orders.details["sqlite"]["queued"] == 300 + 600 + 225
    path = harness.write_json([parse, orders], path=tmp_path / "latest.json", started="now", elapsed=1.0, arguments={})
    document = json.loads(path.read_text())
    assert [b["name"] for b in document["benchmarks"]] == ["parse", "orders"]
    assert "parse" in harness.text_table([parse, orders])


def test_memory_child_reports_its_peak():
    figures = memory.child(1_000)
    assert figures["rows"] == 1_000
    assert figures["peak_rss_mb"] >= figures["before_sync_mb"] > 0

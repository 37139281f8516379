"""The benchmarks' own code at toy sizes: the floor arithmetic, the synthetic stores, and the raw
statements queuing exactly the rows the steps queue. No timing is asserted (benchmarks are not tests);
the send, validation and verify benchmarks and the end-to-end sync's send are left to ``make bench``
(they import GX or start emulator processes, tens of seconds before any work)."""

from __future__ import annotations

import json

import pytest

from benchmarks import e2e, harness, steps
from benchmarks.stores import fill_store
from kl_sync.db import make_engine
from kl_sync.emulator.journal import Journal
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


def test_end_to_end_child_runs_the_command_and_reports_its_peak(tmp_path, monkeypatch):
    # The store-reading steps only (no GX, no emulator): the child runs kl-sync's own main and the
    # store queues exactly the events the benchmark's floor is computed for.
    customers, log_rows, orders = e2e.store_size(0.005)
    engine = make_engine(harness.sqlite_url(tmp_path / "store.db"), sqlite_wal=False)
    fill_store(engine, customers=customers, log_rows=log_rows, orders=orders)
    engine.dispose()
    for name, value in e2e._environment(tmp_path, "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    report = e2e.child(["sync", "--no-prefect", "--from-start", "--json", "--steps", "parse,orders"])
    assert report["exit_code"] == 0
    queued = report["counts"]["parse"]["queued"] + report["counts"]["orders"]["queued"]
    assert queued == e2e.expected_events(log_rows, orders) == 750 + 90 * 3 + 68
    assert report["peak_rss_mb"] > 0


def test_end_to_end_floor_is_the_slowest_endpoints():
    # 218 bulk creates: one steady window of 150, then 68 more in bursts of 10 -> 60 + 6 s; the
    # profile import's one request and the reads' few do not bound it.
    floor, endpoint = e2e.run_floor({"bulk_create_events": 218, "bulk_import_profiles": 1, "get_profiles": 3})
    assert (floor, endpoint) == (66.0, "bulk_create_events")
    assert e2e.run_floor({"bulk_create_events": 5, "bulk_suppress_profiles": 76}) == (1.0, "bulk_suppress_profiles")


def test_journal_times_read_the_emulators_own_lines(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"ts": 12.5, "method": "POST", "path": "/api/event-bulk-create-jobs", "status": 202},
                   body_json='{"data": "x\\u2028"}')
    journal.append({"ts": 13.25, "method": "GET", "path": "/api/profiles", "query": {}})
    journal.close()
    assert e2e.journal_times(tmp_path / "journal.jsonl") == [
        (12.5, "POST", "/api/event-bulk-create-jobs"), (13.25, "GET", "/api/profiles")]

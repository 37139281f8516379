"""Events after the 202, as Klaviyo treats them: readable only once processed, now and then lost
(and then sendable again), and a bulk request that repeats a unique_id for one profile and metric
fails whole."""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import pytest

from kl_sync.emulator import EmulatorConfig, running_emulator
from kl_sync.emulator.cli import add_arguments, config_from
from tests.emulator.klaviyo_bodies import Api, bulk_entry, bulk_events, event, single_event
from tests.spec_oracle import assert_error_body, assert_response_valid

BULK = "/api/event-bulk-create-jobs"


def _read_back(api: Api) -> list[str]:
    """The unique ids GET /api/events shows (``$event_id``), every page."""
    answer = api.get("/api/events", params={"page[size]": 1000})
    assert_response_valid("get_events", answer)
    return [e["attributes"]["event_properties"]["$event_id"] for e in answer.json()["data"]]


def test_an_accepted_event_is_readable_only_once_processed(tmp_path: Path):
    with running_emulator(tmp_path / "acct", processing_delay=3600) as emu:
        api = Api(emu.base_url)
        answer = api.post(BULK, bulk_events([bulk_entry("ann@example.com", [event(unique_id="log:1")])]))
        assert (answer.status_code, answer.content) == (202, b"")
        assert _read_back(api) == [] and emu.events() == []
        (accepted,) = emu.events(accepted=True)
        assert (accepted["unique_id"], accepted["status"]) == ("log:1", "processing")
        # While it is processing its unique_id is taken: a repeat in a later request is dropped.
        assert api.post("/api/events", single_event("ann@example.com", unique_id="log:1")).status_code == 202
        emu.set_processing(delay=0.2)
        assert api.post("/api/events", single_event("ann@example.com", unique_id="log:2")).status_code == 202
        time.sleep(0.5)
        assert _read_back(api) == ["log:2"]
        assert [(e["unique_id"], e["status"]) for e in emu.events(accepted=True)] == [
            ("log:1", "processing"), ("log:2", "shown")]


def test_a_lost_event_is_never_read_and_its_unique_id_stays_free(tmp_path: Path):
    with running_emulator(tmp_path / "acct", lose=1.0) as emu:
        api = Api(emu.base_url)
        body = bulk_events([bulk_entry("ann@example.com", [event(unique_id="log:1", properties={"Send": 1})])])
        assert api.post(BULK, body).status_code == 202
        assert _read_back(api) == [] and emu.events() == []
        assert [(e["unique_id"], e["status"]) for e in emu.events(accepted=True)] == [("log:1", "lost")]
        emu.set_processing(lose=0.0)
        body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["events"]["data"][0][
            "attributes"]["properties"] = {"Send": 2}
        assert api.post(BULK, body).status_code == 202
        assert _read_back(api) == ["log:1"]
        assert emu.events()[0]["properties"] == {"Send": 2}
        assert [e["status"] for e in emu.events(accepted=True)] == ["shown", "lost"]


def _lost_ids(data_dir: Path, seed: int) -> list[str]:
    with running_emulator(data_dir, lose=0.3, lose_seed=seed) as emu:
        api = Api(emu.base_url)
        for batch in range(4):
            entries = [bulk_entry(f"c{n}@example.com", [event(unique_id=f"log:{batch}:{n}")]) for n in range(50)]
            assert api.post(BULK, bulk_events(entries)).status_code == 202
        return [e["unique_id"] for e in emu.events(accepted=True) if e["status"] == "lost"]


def test_losses_are_drawn_event_by_event_and_repeat_with_the_seed(tmp_path: Path):
    first, again, other = (_lost_ids(tmp_path / name, seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert first == again
    assert first != other
    # One by one, not whole requests: every request of 50 keeps some and loses some.
    assert 0 < len(first) < 200
    assert {uid.split(":")[1] for uid in first} == {"0", "1", "2", "3"}


def test_a_unique_id_repeated_for_one_profile_and_metric_fails_the_whole_request(fresh_emu, fresh_api):
    # Two entries for one profile (the e-mail's case and the names differ: Klaviyo finds one profile).
    body = bulk_events([
        bulk_entry("bob@example.com", [event(unique_id="log:7")]),
        bulk_entry("ann@example.com", [event(unique_id="log:1"), event("Fulfilled Order", unique_id="log:1")],
                   first_name="Ann"),
        bulk_entry("ANN@example.com", [event(unique_id="log:1")], first_name="Annie"),
    ])
    answer = fresh_api.post(BULK, body)
    assert answer.status_code == 400
    (error,) = answer.json()["errors"]
    assert error["source"]["pointer"] == "/data/attributes/events-bulk-create/data/2/attributes/events/data/0/attributes/unique_id"
    assert "no events were processed" in error["detail"]
    assert_error_body(answer)
    # Nothing was processed: no event, and no profile the request would have made.
    assert fresh_emu.events(accepted=True) == [] and fresh_emu.profiles() == []


def test_without_unique_id_two_events_in_one_second_repeat_the_default(fresh_api):
    events = [event(time="2024-05-15T12:00:00+00:00"), event(time="2024-05-15T12:00:00.700+00:00")]
    answer = fresh_api.post(BULK, bulk_events([bulk_entry("ann@example.com", events)]))
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["source"]["pointer"].endswith("/events/data/1/attributes/time")


def test_cli_options_make_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from(parser.parse_args(["--processing-delay", "2", "--lose", "0.03", "--fault-seed", "7"]))
    assert (config.processing_delay, config.lose, config.lose_seed) == (2.0, 0.03, 7)
    assert config_from(parser.parse_args([])).processing_delay == 0.0
    for bad in ({"lose": 1.5}, {"processing_delay": -1}):
        with pytest.raises(ValueError):
            EmulatorConfig(**bad)


def test_an_account_from_before_processing_opens_with_its_events_shown(tmp_path: Path):
    data_dir = tmp_path / "acct"
    with running_emulator(data_dir) as emu:
        assert Api(emu.base_url).post("/api/events", single_event("ann@example.com", unique_id="log:1")).status_code == 202
    # As an older emulator left it: the events table without processed_at.
    columns = ("seq, id, uuid, metric_id, profile_id, dedupe_key, unique_id, time, value, value_currency, backfill, "
               "properties, source, received")
    conn = sqlite3.connect(data_dir / "emulator.db")
    conn.executescript(f"""
        ALTER TABLE events RENAME TO newer;
        DROP INDEX events_time;
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, uuid TEXT NOT NULL, metric_id TEXT NOT NULL,
            profile_id TEXT NOT NULL, dedupe_key TEXT NOT NULL, unique_id TEXT, time INTEGER NOT NULL, value REAL,
            value_currency TEXT, backfill INTEGER NOT NULL, properties TEXT NOT NULL, source TEXT NOT NULL,
            received TEXT NOT NULL, UNIQUE (profile_id, metric_id, dedupe_key));
        INSERT INTO events ({columns}) SELECT {columns} FROM newer;
        DROP TABLE newer;
    """)
    conn.close()
    with running_emulator(data_dir) as emu:
        assert [e["unique_id"] for e in emu.events()] == ["log:1"]
        assert _read_back(Api(emu.base_url)) == ["log:1"]

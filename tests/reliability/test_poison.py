"""Poison rows (issue 14): whatever a store value is — JSON nested 500 or 5,000 levels deep, JSON of
megabytes, text that is not UTF-8, a NUL, NaN, 1e400, an integer beyond 64 bits — its row becomes a
dead letter naming it and the reason, the step goes on, and every other row is sent; nothing raises
out of a run and nothing stays leased. An order is one unit: one bad line holds the whole order."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kl_sync import state as state_store
from kl_sync.app.run import run_sync
from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.settings import DEFAULT_LOG_METRICS
from kl_sync.state.migrate import open_state
from kl_sync.state.outbox import OutboxItem, enqueue
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log
from tests.reliability.helpers import settings_for

KEY = "pk_poison"
NOW = dt.datetime(2026, 11, 1, 12, 0)


def customer(cid: int, email: str, first_name: str = "Ana") -> dict[str, Any]:
    return {"id": cid, "email": email, "first_name": first_name, "last_name": "Ng", "status": "Active",
            "schedule": None, "box": None, "signup_date": None, "email_subscribed": True,
            "has_filled_out_profile": False, "created_at": NOW - dt.timedelta(days=30),
            "updated_at": NOW - dt.timedelta(days=30)}


def log(log_id: int, customer_id: int, *, data: str | None = None, message: str = "ok") -> dict[str, Any]:
    return {"id": log_id, "created_at": dt.datetime(2026, 10, 1), "customer_id": customer_id,
            "type": "shipping.email", "message": message, "data": data}


def make_store(folder: Path, *, people=(), logs=(), shop_orders=(), lines=()) -> str:
    url = f"sqlite:///{folder / 'store.db'}"
    engine = make_engine(url, sqlite_wal=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table, rows in ((customers, people), (system_log, logs), (orders, shop_orders), (order_items, lines)):
            if rows:
                conn.execute(table.insert(), list(rows))
    engine.dispose()
    return url


def sync(folder: Path, store_url: str, *, before_send=None) -> tuple[set[str], dict[str, dict[str, Any]], list]:
    """One run from the start (which must not raise): the unique_ids Klaviyo got, the dead letters by
    key, and the outbox rows still pending or leased."""
    with running_emulator(folder / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{folder / 'state.db'}", emu.base_url, KEY)
        if before_send is not None:
            before_send(settings)
        run_sync(settings, from_start=True)
        sent = {e["unique_id"] for e in emu.events()}
    with open_state(settings.state_url).connect() as conn:
        letters = {d["key"]: d for d in state_store.list_dead_letters(conn)}
        waiting = [r for r in state_store.outbox_counts(conn) if r["status"] == "pending"]
    return sent, letters, waiting


POISON_DATA = {
    "nested 500 levels": ('{"d": ' + "[" * 500 + "]" * 500 + "}", "nests deeper than 64 levels"),
    "nested 5,000 levels": ('{"d": ' + "[" * 5000 + "]" * 5000 + "}", "nests too deeply"),
    "NaN": ('{"x": NaN}', "nan, which JSON cannot carry"),
    "1e400": ('{"x": 1e400}', "inf, which JSON cannot carry"),
    "an integer beyond 64 bits": (json.dumps({"x": 2**70}), "beyond 64 bits"),
    "6 MB of JSON": (json.dumps({"rows": ["r" * 1000] * 6000}), "Klaviyo takes at most 5,000,000"),
    "a NUL in the data": (json.dumps({"note": "a\x00b"}), "NUL"),
}


@pytest.mark.parametrize("case", list(POISON_DATA))
def test_a_poison_log_row_is_a_dead_letter_and_the_rest_is_sent(case: str, tmp_path: Path) -> None:
    data, reason = POISON_DATA[case]
    store = make_store(tmp_path, people=[customer(1, "a@example.com")],
                       logs=[log(1, 1), log(2, 1, data=data), log(3, 1)])
    sent, letters, waiting = sync(tmp_path, store)
    assert sent == {"log:1", "log:3"}
    assert set(letters) == {"log:2"}, letters
    assert reason in letters["log:2"]["reason"] and letters["log:2"]["step"] == "parse"
    assert waiting == []


def test_a_nul_in_a_message_is_a_dead_letter(tmp_path: Path) -> None:
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], logs=[log(1, 1, message="a\x00b"), log(2, 1)])
    sent, letters, _ = sync(tmp_path, store)
    assert sent == {"log:2"} and "properties.message holds a NUL" in letters["log:1"]["reason"]


@pytest.mark.parametrize("stored", ["416eff61", "41eda080"], ids=["invalid UTF-8", "a lone surrogate"])
def test_text_sqlite_cannot_decode_fails_its_row_naming_the_customer(stored: str, tmp_path: Path) -> None:
    store = make_store(tmp_path, people=[customer(1, "a@example.com"), customer(2, "b@example.com")],
                       logs=[log(1, 1), log(2, 2), log(3, 1)])
    with sqlite3.connect(tmp_path / "store.db") as raw:  # SQLite keeps whatever bytes it is given
        raw.execute(f"UPDATE customers SET first_name = CAST(X'{stored}' AS TEXT) WHERE id = 2")
    sent, letters, waiting = sync(tmp_path, store)
    assert sent == {"log:1", "log:3"}
    # The customers step cannot read customer 2's row either: its profile is lettered, the rest goes on.
    assert set(letters) == {"log:2", "profile:2"}
    assert "customer 2: first_name is not valid UTF-8" in letters["log:2"]["reason"]
    assert letters["profile:2"]["step"] == "customers"
    assert waiting == []


def test_a_body_that_cannot_be_built_fails_only_its_row(tmp_path: Path) -> None:
    """A payload queued before the steps checked payloads (or edited by hand): building its request
    body raises RecursionError; that row is a dead letter, the rest of its batch is sent."""
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], logs=[log(1, 1), log(2, 1)])
    deep: Any = []
    for _ in range(900):
        deep = [deep]

    def queue_a_deep_payload(settings) -> None:
        event = {"metric": DEFAULT_LOG_METRICS["shipping.email"], "time": "2026-10-01T00:00:00-04:00", "unique_id": "log:99",
                 "properties": {"d": deep}, "profile": {"email": "a@example.com"}}
        with open_state(settings.state_url).begin() as conn:
            enqueue(conn, [OutboxItem("log:99", "log_event", event)])

    sent, letters, waiting = sync(tmp_path, store, before_send=queue_a_deep_payload)
    assert sent == {"log:1", "log:2"}
    assert set(letters) == {"log:99"} and "RecursionError" in letters["log:99"]["reason"]
    assert waiting == []


def _order(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "customer_id": 1, "status": "Placed", "total": Decimal("12.50"),
            "created_at": NOW, "updated_at": NOW, "delivery_date": None}


def _line(line_id: int, order_id: int, quantity: int) -> dict[str, Any]:
    return {"id": line_id, "order_id": order_id, "product_id": f"p{line_id}", "product_name": "Kale",
            "quantity": quantity, "item_price": Decimal("4.25"), "product_url": None, "image_url": None,
            "categories": None}


def test_an_order_with_one_bad_line_is_held_whole(tmp_path: Path) -> None:
    """Line 12's quantity is -1: its Ordered Product and the Placed Order fail the suites, and line
    11's Ordered Product must not go to Klaviyo without its order."""
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], shop_orders=[_order(1), _order(2)],
                       lines=[_line(11, 1, 2), _line(12, 1, -1), _line(21, 2, 1)])
    sent, letters, waiting = sync(tmp_path, store)
    assert sent == {"order:2:placed", "order:2:item:21"}
    assert {"order:1:placed", "order:1:item:11", "order:1:item:12"} <= set(letters)
    assert "held with its order (order:1)" in letters["order:1:item:11"]["reason"]
    assert waiting == []


#: A value SQLite keeps in a typed column though it is not of that type: (table, column, row id,
#: the SQL value planted, the dead letter's key, what its reason says).
UNREADABLE = {
    "a log time that is not a date": ("system_log", "created_at", 2, "'not a date'", "log:2",
                                      "log:2: created_at is 'not a date', not a date and time"),
    "a log time in year 0": ("system_log", "created_at", 2, "'0000-01-01 00:00:00'", "log:2", "not a date and time"),
    "a customer id that is text": ("system_log", "customer_id", 2, "'abc'", "log:2",
                                   "log:2: customer_id is 'abc', not an integer"),
    "an order total that is text": ("orders", "total", 1, "'abc'", "order:1", "total is 'abc', not a finite number"),
    "an order total of 9e999": ("orders", "total", 1, "9e999", "order:1", "total is inf, not a finite number"),
    "a delivery date that is not a date": ("orders", "delivery_date", 1, "'soon'", "order:1",
                                           "delivery_date is 'soon', not a date"),
    "a line price that is text": ("order_items", "item_price", 11, "'abc'", "order:1",
                                  "order 1: line 11: item_price is 'abc', not a finite number"),
    "a line quantity of 1e30": ("order_items", "quantity", 11, "1e30", "order:1",
                                "order 1: line 11: quantity is 1e+30, not an integer"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_store_value_not_of_its_column_type_fails_its_row_only(case: str, tmp_path: Path) -> None:
    """SQLite keeps any value in any column; one that is not of its column's type used to fail the
    query of its whole chunk (ValueError: Invalid isoformat string, TypeError: must be real number),
    so every run crashed the same way."""
    table, column, row_id, value, key, reason = UNREADABLE[case]
    store = make_store(tmp_path, people=[customer(1, "a@example.com"), customer(2, "b@example.com")],
                       logs=[log(1, 1), log(2, 2), log(3, 1)], shop_orders=[_order(1), _order(2)],
                       lines=[_line(11, 1, 2), _line(21, 2, 1)])
    with sqlite3.connect(tmp_path / "store.db") as raw:
        raw.execute(f"UPDATE {table} SET {column} = {value} WHERE id = {row_id}")
    sent, letters, waiting = sync(tmp_path, store)
    everything = {"log:1", "log:2", "log:3", "order:1:placed", "order:1:item:11", "order:2:placed", "order:2:item:21"}
    held = {"log:2"} if key == "log:2" else {"order:1:placed", "order:1:item:11"}
    assert sent == everything - held
    assert set(letters) == {key}, letters
    assert reason in letters[key]["reason"]
    assert waiting == []


def test_a_customer_updated_at_that_is_not_a_date_is_lettered_and_later_runs_go_on(tmp_path: Path) -> None:
    """The customers stream's cursor is (updated_at, id): a row whose updated_at is not a date is
    lettered, the cursor stays at the last readable row, and the next runs neither crash nor letter it
    twice, and still read a customer changed after it."""
    store = make_store(tmp_path, people=[customer(1, "a@example.com"), customer(2, "b@example.com")])
    with sqlite3.connect(tmp_path / "store.db") as raw:
        raw.execute("UPDATE customers SET updated_at = 'garbage' WHERE id = 2")
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY)
        run_sync(settings)
        with sqlite3.connect(tmp_path / "store.db") as raw:
            raw.execute("INSERT INTO customers (id, email, first_name, status, email_subscribed, has_filled_out_profile,"
                        " created_at, updated_at) VALUES (3, 'c@example.com', 'Cy', 'Active', 1, 0,"
                        " '2026-11-01 09:00:00', '2026-11-01 09:00:00')")
        run_sync(settings)
        profiles = {p["email"] for p in emu.profiles()}
    with open_state(settings.state_url).connect() as conn:
        letters = [d for d in state_store.list_dead_letters(conn)]
    assert {"a@example.com", "c@example.com"} <= profiles and "b@example.com" not in profiles
    assert [(d["key"], d["step"]) for d in letters if d["step"] == "customers"] == [("profile:2", "customers")]
    assert "updated_at is 'garbage', not a date and time" in letters[0]["reason"]


def _bulk_bodies(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in journal if line["path"] == "/api/event-bulk-create-jobs"]


def test_a_message_over_100000_bytes_is_a_dead_letter_before_sending(tmp_path: Path) -> None:
    """Klaviyo: "a single string cannot exceed 100KB", read as 100,000 bytes by the suites, the client
    and the emulator alike. A 101,000-byte message used to pass the suites (102,400) and be refused by
    the emulator after sending; one of exactly 100,000 bytes is sent and taken."""
    store = make_store(tmp_path, people=[customer(1, "a@example.com")],
                       logs=[log(1, 1), log(2, 1, message="m" * 101_000), log(3, 1, message="é" * 50_000)])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY)
        run_sync(settings, from_start=True)
        sent = {e["unique_id"] for e in emu.events()}
        requests = _bulk_bodies(emu.journal())
    with open_state(settings.state_url).connect() as conn:
        letters = {d["key"]: d for d in state_store.list_dead_letters(conn)}
    assert sent == {"log:1", "log:3"}
    assert set(letters) == {"log:2"} and "max_string_bytes" in letters["log:2"]["reason"]
    assert requests and all(200 <= line["status"] < 300 for line in requests)
    assert not any("m" * 101_000 in json.dumps(line["body"]) for line in requests)


#: Addresses at the edges of Klaviyo's e-mail rule: kl-sync's check must agree with the emulator's.
EDGE_EMAILS = ["user@bücher.de", "user@xn--bcher-kva.de", "ü@example.com", "a@b.co", "a@b.c", "a@b", "a b@example.com",
               "a@-b.com", "a@b-.com", "first.last+tag@sub.example.org", "a..b@example.com", ".a@example.com",
               "a@example.com.", "a@example.123", "x" * 250 + "@example.com", "a@exa_mple.com", "o'neil@example.ie"]


@pytest.mark.parametrize("email", EDGE_EMAILS)
def test_our_e_mail_check_and_the_emulator_agree(email: str) -> None:
    from kl_sync.emulator.rules.profiles import read_profile
    from kl_sync.normalize import normalize_email
    from kl_sync.quality import validate_batch

    problems: list[Any] = []
    read_profile({"type": "profile", "attributes": {"email": email}}, ("data",), problems)
    emulator_takes = not problems
    assert (normalize_email(email) is not None) == emulator_takes
    report = validate_batch("suppression", [("suppress:x", {"email": email.lower()})], metric_names=())
    assert (not report.failures) == emulator_takes, report.failures


def test_an_international_domain_is_a_dead_letter_that_says_to_punycode_it(tmp_path: Path) -> None:
    store = make_store(tmp_path, people=[customer(1, "a@example.com"), customer(2, "user@bücher.de")],
                       logs=[log(1, 1), log(2, 2)])
    sent, letters, waiting = sync(tmp_path, store)
    assert sent == {"log:1"}
    assert set(letters) == {"log:2", "profile:2"}
    for letter in letters.values():
        assert "only ASCII addresses are accepted" in letter["reason"] and "punycode" in letter["reason"]
    assert waiting == []


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_an_order_split_across_send_batches_is_still_held_whole(batch_size: int, tmp_path: Path) -> None:
    """The sender claims ``send_batch_size`` rows, so a batch may end between an order's Placed Order
    (here refused by the suites: a negative total) and its lines; the lines claimed in the next batch
    used to be sent, Ordered Products in Klaviyo without their order."""
    refused = {**_order(1), "total": Decimal("-5")}
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], shop_orders=[refused, _order(2)],
                       lines=[_line(11, 1, 2), _line(12, 1, 1), _line(21, 2, 1)])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                send_batch_size=batch_size)
        run_sync(settings, from_start=True)
        sent = {e["unique_id"] for e in emu.events()}
    with open_state(settings.state_url).connect() as conn:
        letters = {d["key"]: d for d in state_store.list_dead_letters(conn)}
    assert sent == {"order:2:placed", "order:2:item:21"}
    assert {"order:1:placed", "order:1:item:11", "order:1:item:12"} == set(letters)
    assert all("held with its order (order:1)" in letters[key]["reason"] for key in ("order:1:item:11", "order:1:item:12"))


def test_local_times_in_a_dst_gap_or_overlap_map_one_way_everywhere(tmp_path: Path) -> None:
    """2026-03-08 02:30 never happened in New York (02:00 jumped to 03:00); 2026-11-01 01:30 happened
    twice. A gap time is read with the offset before the jump and written as the local time that
    instant has (03:30-04:00, not the non-existent 02:30-05:00); an overlap time is the first one.
    The log step and the orders step agree, and Klaviyo gets the same instant."""
    gap, overlap = dt.datetime(2026, 3, 8, 2, 30), dt.datetime(2026, 11, 1, 1, 30)
    logs = [{**log(1, 1), "created_at": gap}, {**log(2, 1), "created_at": overlap}]
    shop_orders = [{**_order(1), "created_at": gap, "updated_at": gap}]
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], logs=logs, shop_orders=shop_orders,
                       lines=[_line(11, 1, 1)])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                store_timezone="America/New_York")
        run_sync(settings, from_start=True)
        times = {line_event["attributes"]["unique_id"]: line_event["attributes"]["time"]
                 for line in _bulk_bodies(emu.journal())
                 for entry in line["body"]["data"]["attributes"]["events-bulk-create"]["data"]
                 for line_event in entry["attributes"]["events"]["data"]}
        shown = {e["unique_id"]: e["time"] for e in emu.events()}
    assert times == {"log:1": "2026-03-08T03:30:00-04:00", "log:2": "2026-11-01T01:30:00-04:00",
                     "order:1:placed": "2026-03-08T03:30:00-04:00", "order:1:item:11": "2026-03-08T03:30:00-04:00"}
    assert {dt.datetime.fromisoformat(shown[k].replace("Z", "+00:00")) for k in ("log:1", "order:1:placed")} == {
        dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC)}


def test_a_read_only_sqlite_uri_store_url_makes_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite:///file:…?mode=ro&uri=true`` names a URI SQLite opens itself, not a path: no folder
    called ``file:…`` may appear beside the run."""
    store = make_store(tmp_path, people=[customer(1, "a@example.com")], logs=[log(1, 1)])
    monkeypatch.chdir(tmp_path)
    from kl_sync.store.readers import STREAMS, read_after, store_engine

    engine = store_engine(f"sqlite:///file:{tmp_path / 'store.db'}?mode=ro&uri=true")
    assert [row.id for rows in read_after(engine, STREAMS["system_log"], None) for row in rows] == [1]
    assert store and sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]

"""Dead letters a person can fix (issue 15): fixing a letter's cause in the store makes its event
arrive in Klaviyo exactly once, and its letter resolves by itself; through the real emulator.

The two stories: a customer whose status the suites do not know (``Paused``: every event riding
their profile fails the quality gate at send) and a malformed e-mail (the parse and orders steps
cannot build the rows at all: they never reach the outbox)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select, update

from kl_sync.app.cli import main
from kl_sync.app.run import run_sync
from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.settings import get_settings
from kl_sync.state.tables import dead_letters, outbox
from kl_sync.store.contract import customers, system_log
from tests.reliability.helpers import accepted_unique_ids, settings_for
from tests.reliability.test_poison import make_store

KEY = "pk_replay"
NOW = dt.datetime(2026, 11, 1, 12, 0)
IN_SET = "expect_column_values_to_be_in_set(status)"


def _customer(cid, email, status="Active"):
    return {"id": cid, "email": email, "first_name": "Ana", "last_name": "Ng", "status": status, "schedule": None,
            "box": None, "signup_date": None, "email_subscribed": True, "has_filled_out_profile": False,
            "created_at": NOW - dt.timedelta(days=30), "updated_at": NOW - dt.timedelta(days=30)}


def _log(log_id, customer_id):
    return {"id": log_id, "created_at": dt.datetime(2026, 10, 1, 9, 0, log_id), "customer_id": customer_id,
            "type": "shipping.email", "message": f"shipped {log_id}", "data": None}


def _order(order_id, customer_id):
    return {"id": order_id, "customer_id": customer_id, "status": "Placed", "total": Decimal("12.50"),
            "created_at": NOW - dt.timedelta(days=2), "updated_at": NOW - dt.timedelta(days=2), "delivery_date": None}


def _line(line_id, order_id):
    return {"id": line_id, "order_id": order_id, "product_id": "p1", "product_name": "Veg box", "quantity": 1,
            "item_price": Decimal("12.50"), "product_url": None, "image_url": None, "categories": "Boxes"}


def _update_store(store_url: str, table, row_id: int, **values) -> None:
    engine = make_engine(store_url, sqlite_wal=False)
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row_id).values(**values))
    engine.dispose()


def _fix_customer(store_url: str, customer_id: int, **values) -> None:
    _update_store(store_url, customers, customer_id, updated_at=NOW, **values)


def _letters(state_url: str) -> dict[str, list[str]]:
    """Each letter key -> the statuses of its letters, oldest first."""
    found: dict[str, list[str]] = {}
    with make_engine(state_url).connect() as conn:
        for key, status in conn.execute(select(dead_letters.c.key, dead_letters.c.status).order_by(dead_letters.c.id)):
            found.setdefault(key, []).append(status)
    return found


def _cli(monkeypatch, settings, capsys, *args: str) -> tuple[int, list[str]]:
    for name, value in (("KL_SYNC_STORE_URL", settings.store_url), ("KL_SYNC_STATE_URL", settings.state_url),
                        ("KLAVIYO_BASE_URL", settings.klaviyo_base_url), ("KLAVIYO_API_KEY", KEY)):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out.strip().splitlines()


def _delivered_once(emu, keys) -> None:
    """Every key is in Klaviyo, and no accepted request carried it twice."""
    held = Counter(e["unique_id"] for e in emu.events())
    sent = accepted_unique_ids(emu.journal())
    for key in keys:
        assert held[key] == 1 and sent[key] == 1, (key, held[key], sent[key])


def test_a_paused_customer_fixed_in_the_store_then_replayed_by_reason_arrives_once(tmp_path, monkeypatch, capsys):
    store_url = make_store(tmp_path, people=[_customer(1, "a@example.com"), _customer(2, "p@example.com", "Paused")],
                           logs=[_log(1, 1), _log(2, 2), _log(3, 2), _log(4, 1)], shop_orders=[_order(1, 2)],
                           lines=[_line(11, 1)])
    paused = ["log:2", "log:3", "order:1:placed", "order:1:item:11"]
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                verify_after="PT0S", verify_grace="PT0S")
        run_sync(settings, from_start=True)
        letters = _letters(settings.state_url)
        assert all(letters[key] == ["open"] for key in paused), letters
        assert {e["unique_id"] for e in emu.events()} == {"log:1", "log:4"}

        # Not fixed yet: the rebuilt payload fails the same way, the letters stay open.
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "--reason", IN_SET)
        assert code == 1 and f"log:2: still failing: failed data-quality expectations: {IN_SET}" in lines
        assert all(_letters(settings.state_url)[key] == ["open"] for key in paused)

        _fix_customer(store_url, 2, status="Active")
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "--reason", IN_SET)
        assert code == 0, lines
        assert all(any(line.startswith(f"{key}: queued") for line in lines) for key in paused), lines

        run_sync(settings)  # a later sync sends and verifies them
        _delivered_once(emu, ["log:1", "log:4", *paused])
        letters = _letters(settings.state_url)
        assert all(letters[key][0] == "resolved" for key in paused), letters
        assert not any(status == "open" for statuses in letters.values() for status in statuses), letters
        # The rebuilt event carries the customer's CURRENT profile.
        with make_engine(settings.state_url).connect() as conn:
            payload = json.loads(conn.execute(select(outbox.c.payload).where(outbox.c.key == "log:2")).scalar_one())
        assert payload["profile"]["properties"]["Status"] == "Active"

        # Replaying again sends nothing twice: the letters are settled.
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:2")
        assert code == 2 and lines == ["log:2: not found: no open dead letter has this key"]


def test_a_malformed_email_fixed_in_the_store_arrives_by_replay_or_by_from_start(tmp_path, monkeypatch, capsys):
    store_url = make_store(tmp_path, people=[_customer(1, "a@example.com"), _customer(3, "not-an-email")],
                           logs=[_log(5, 1), _log(6, 3), _log(7, 3)], shop_orders=[_order(2, 3)], lines=[_line(21, 2)])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                verify_after="PT0S", verify_grace="PT0S")
        run_sync(settings, from_start=True)
        letters = _letters(settings.state_url)
        assert letters["log:6"] == ["open"] and letters["log:7"] == ["open"] and letters["order:2"] == ["open"]
        with make_engine(settings.state_url).connect() as conn:
            assert conn.execute(select(outbox.c.key).where(outbox.c.key.in_(["log:6", "log:7"]))).all() == []

        # Read as a person would: a summary by reason, not one line per letter.
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "list")
        # log:6, log:7, order:2, and profile:3 (the customers step's: no profile without an e-mail)
        assert code == 0 and lines[-1] == "4 letters, 3 reasons; rows: --limit N or --json"
        assert any("log N: customer N has a malformed e-mail '…'" in line and "log:7" in line for line in lines), lines
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "list", "--step", "orders", "--json")
        assert [letter["key"] for letter in json.loads("\n".join(lines))] == ["order:2"]

        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:6", "nosuch:key")
        assert code == 2
        assert lines == ["log:6: still failing: log 6: customer 3 has a malformed e-mail 'not-an-email'",
                         "nosuch:key: not found: no open dead letter has this key"]
        assert _letters(settings.state_url)["log:6"] == ["open"]

        _fix_customer(store_url, 3, email="c3@example.com")
        # One key replayed by hand; the rest re-read from the start.
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:6")
        assert (code, lines) == (0, ["log:6: queued"])
        assert _letters(settings.state_url)["log:6"] == ["replayed"]
        run_sync(settings, from_start=True)
        _delivered_once(emu, ["log:5", "log:6", "log:7", "order:2:placed", "order:2:item:21"])
        letters = _letters(settings.state_url)
        assert {key: letters[key] for key in ("log:6", "log:7", "order:2")} == {
            "log:6": ["resolved"], "log:7": ["resolved"], "order:2": ["resolved"]}
        (event,) = [e for e in emu.events() if e["unique_id"] == "log:6"]
        assert event["profile_email"] == "c3@example.com"
        code, lines = _cli(monkeypatch, settings, capsys, "status", "--json")
        status = json.loads("\n".join(lines))
        assert (status["dead_letters"]["open"], status["dead_letters"]["resolved"]) == (0, 4)
        # The re-read from the start resolved them all (the replay only queued log:6).
        assert [run["letters_resolved"] for run in status["runs"]] == [4, 0, 0, 0]


def test_a_paused_customer_fixed_in_the_store_arrives_once_by_from_start(tmp_path):
    """``sync --from-start`` meets the dead keys again: it rebuilds them from the current rows instead
    of skipping them (log events and the order's whole unit), and what was sent is never sent twice."""
    store_url = make_store(tmp_path, people=[_customer(1, "a@example.com"), _customer(2, "p@example.com", "Paused")],
                           logs=[_log(1, 1), _log(2, 2), _log(3, 2)], shop_orders=[_order(1, 2), _order(2, 1)],
                           lines=[_line(11, 1), _line(21, 2)])
    paused = ["log:2", "log:3", "order:1:placed", "order:1:item:11"]
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                verify_after="PT0S", verify_grace="PT0S")
        run_sync(settings, from_start=True)
        assert all(_letters(settings.state_url)[key] == ["open"] for key in paused)
        _fix_customer(store_url, 2, status="Active")
        counts = run_sync(settings, from_start=True)
        assert counts["parse"]["queued"] == 2 and counts["orders"]["queued"] == 2, counts
        _delivered_once(emu, ["log:1", "order:2:placed", "order:2:item:21", *paused])
        letters = _letters(settings.state_url)
        assert all(letters[key] == ["resolved"] for key in paused), letters


def test_a_replayed_row_is_checked_as_the_steps_check_it_before_it_is_queued(tmp_path, monkeypatch, capsys):
    """A row the parse step lettered for a value that cannot be queued (an integer beyond 64 bits),
    replayed before the store is fixed, or "fixed" to another such value (NaN), fails with that
    reason and is not queued: queued, the integer would have reached Klaviyo as a float
    (1.1805916207174113e+21) and NaN as a body Klaviyo refuses. Fixed, it is queued and arrives once."""
    store_url = make_store(tmp_path, people=[_customer(1, "a@example.com")],
                           logs=[_log(1, 1), {**_log(2, 1), "data": json.dumps({"x": 2**70})}])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY,
                                verify_after="PT0S", verify_grace="PT0S")
        run_sync(settings, from_start=True)
        assert _letters(settings.state_url) == {"log:2": ["open"]}

        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:2")
        assert code == 1 and len(lines) == 1 and lines[0].startswith("log:2: still failing:"), lines
        assert "beyond 64 bits" in lines[0], lines
        _update_store(store_url, system_log, 2, data='{"x": NaN}')
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:2")
        assert code == 1 and "nan, which JSON cannot carry" in lines[0], lines
        with make_engine(settings.state_url).connect() as conn:
            assert conn.execute(select(outbox.c.key).where(outbox.c.key == "log:2")).all() == []

        _update_store(store_url, system_log, 2, data=json.dumps({"x": 2**62}))
        code, lines = _cli(monkeypatch, settings, capsys, "dead-letters", "replay", "log:2")
        assert code == 0 and lines[0].startswith("log:2: queued"), lines
        run_sync(settings)
        _delivered_once(emu, ["log:1", "log:2"])
        (event,) = [e for e in emu.events() if e["unique_id"] == "log:2"]
    assert _letters(settings.state_url)["log:2"][0] == "resolved"
    assert event["properties"]["x"] == 2**62 and isinstance(event["properties"]["x"], int)

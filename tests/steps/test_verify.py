"""The verify step against the emulator's own store: what it marks verified Klaviyo holds, what it
does not find is sent again, and what never appears becomes a dead letter saying so."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from kl_sync.app.run import run_sync
from kl_sync.emulator import running_emulator
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.events import send_event
from kl_sync.state.delivery import delivery_counts
from kl_sync.state.dead_letters import list_dead_letters
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.verify import verify_outbox
from tests.planting import T0, customer, item, log, order, plant
from tests.reliability.helpers import settings_for

KEY = "pk_verify"
SEND = ["parse", "orders", "suppress", "send"]
ON_BOTH = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


def _store(store_url: str):
    """Three customers (one Dead: a suppression), eight log events, two orders (six events)."""
    minutes = [T0 + dt.timedelta(minutes=n) for n in range(8)]
    return plant(
        store_url,
        customers_rows=[customer(1), customer(2), customer(3, status="Dead")],
        log_rows=[log(n + 1, kind, 1 + n % 3, minutes[n]) for n, kind in enumerate(
            ["shipping.email", "failed.payment", "contact.form", "referral.credit", "cancelled", "shipping.email",
             "started.signup", "shipping.email"])],
        order_rows=[order(1, 1), order(2, 2, status="Completed", updated=T0 + dt.timedelta(days=1))],
        item_rows=[item(1, 1), item(2, 1, name="Eggs", price="6.50"), item(3, 2)],
    )


def _settings(store_url: str, state_url: str, emu: Any, **extra: Any):
    durations = {"verify_after": "PT0S", "verify_grace": "PT0S", **extra}
    return settings_for(store_url, state_url, emu.base_url, KEY, **durations)


def _rows(state_url: str) -> dict[str, tuple[str, str, int]]:
    """key -> (kind, status, sends)."""
    with open_state(state_url).connect() as conn:
        return {r.key: (r.kind, r.status, r.sends) for r in conn.execute(select(outbox.c.key, outbox.c.kind,
                                                                                 outbox.c.status, outbox.c.sends))}


def _event_keys(rows: dict[str, tuple[str, str, int]]) -> set[str]:
    return {key for key, (kind, _, _) in rows.items() if kind != "suppression"}


def _shown(emu: Any) -> Counter[str]:
    return Counter(e["unique_id"] for e in emu.events())


@ON_BOTH
def test_lost_events_are_sent_again_and_then_verified(store_url, state_url, tmp_path):
    with running_emulator(tmp_path / "klaviyo", api_keys=(KEY,), lose=1.0) as emu:
        settings = _settings(store_url, state_url, emu)
        _store(store_url)
        run_sync(settings, steps=SEND)
        events = _event_keys(_rows(state_url))
        assert len(events) == 14 and emu.events() == []  # every event accepted (202), every one lost
        emu.set_processing(lose=0.0)

        first = run_sync(settings, steps=["verify"])["verify"]
        # The suppression is in Klaviyo; no event is, so each is sent again at once (grace PT0S).
        assert (first["rows_read"], first["verified"], first["resent"], first["dead_letters"]) == (15, 1, 14, 0)
        assert first["resend"]["sent_events"] == 14
        assert set(_shown(emu)) == events

        second = run_sync(settings, steps=["verify"])["verify"]
        assert (second["rows_read"], second["verified"], second["resent"]) == (14, 14, 0)
        assert second["by_metric"]["Ordered Product"] == 3
        rows = _rows(state_url)
        assert {status for _, status, _ in rows.values()} == {"verified"}
        assert all(sends == (2 if kind != "suppression" else 1) for kind, _, sends in rows.values())
        assert _shown(emu) == Counter(dict.fromkeys(events, 1))
        assert run_sync(settings, steps=["verify"])["verify"]["rows_read"] == 0  # nothing left to read
    with open_state(state_url).connect() as conn:
        counts = {(row["kind"], row["metric"]): row for row in delivery_counts(conn)}
    assert counts[("suppression", None)]["verified"] == 1
    assert counts[("order_event", "Placed Order")] == {
        "kind": "order_event", "metric": "Placed Order", "queued": 0, "sent": 0, "verified": 2, "missing": 0, "dead": 0}


@ON_BOTH
def test_an_event_that_never_appears_becomes_a_dead_letter_with_that_reason(store_url, state_url, tmp_path):
    with running_emulator(tmp_path / "klaviyo", api_keys=(KEY,), lose=1.0) as emu:
        settings = _settings(store_url, state_url, emu, verify_max_sends=2)
        _store(store_url)
        run_sync(settings, steps=SEND)
        assert run_sync(settings, steps=["verify"])["verify"]["resent"] == 14
        last = run_sync(settings, steps=["verify"])["verify"]
        assert (last["verified"], last["resent"], last["dead_letters"]) == (0, 0, 14)
        assert emu.events() == [] and len(emu.events(accepted=True)) == 28  # two sends each, both lost
    with open_state(state_url).connect() as conn:
        letters = list_dead_letters(conn)
    assert {d["key"] for d in letters} == _event_keys(_rows(state_url))
    assert {(d["step"], d["reason"]) for d in letters} == {
        ("verify", "accepted by Klaviyo (202) but never appeared after 2 sends")}
    assert {status for kind, status, _ in _rows(state_url).values() if kind != "suppression"} == {"dead"}


@ON_BOTH
def test_a_row_is_verified_only_when_klaviyo_holds_it(store_url, state_url, tmp_path):
    # Half the events are lost; for each lost one, another event of the same profile, metric and
    # second (another unique_id) stands beside where it would be: a decoy that must not verify it.
    with running_emulator(tmp_path / "klaviyo", api_keys=(KEY,), lose=0.5, lose_seed=3) as emu:
        settings = _settings(store_url, state_url, emu, verify_grace="P1D")
        _store(store_url)
        run_sync(settings, steps=SEND)
        lost = [e for e in emu.events(accepted=True) if e["status"] == "lost"]
        assert 0 < len(lost) < 14
        emu.set_processing(lose=0.0)
        with KlaviyoClient(KEY, emu.base_url) as client:
            for event in lost:
                decoy = {"metric": event["metric"], "time": event["time"], "unique_id": f"decoy:{event['unique_id']}",
                         "properties": {}, "profile": {"email": event["profile_email"]}}
                assert send_event(client, decoy).status == "sent"

        counts = run_sync(settings, steps=["verify"])["verify"]
        rows = _rows(state_url)
        verified = {key for key, (_, status, _) in rows.items() if status == "verified"}
        held = set(_shown(emu)) | {f"suppress:{s['email']}" for s in emu.suppressions()}
        assert verified == {key for key in rows if key in held}
        assert {e["unique_id"] for e in lost}.isdisjoint(verified)
        # Inside the grace, the lost ones are missing: looked for, not sent again yet.
        assert counts["missing"] == len(lost) and counts["resent"] == 0
        assert {rows[e["unique_id"]][1:] for e in lost} == {("sent", 1)}


@pytest.mark.parametrize("backend", ["sqlite"])  # the chunking is the step's own: one backend is enough
def test_due_rows_are_read_in_chunks_and_the_metrics_once(store_url, state_url, tmp_path):
    with running_emulator(tmp_path / "klaviyo", api_keys=(KEY,)) as emu:
        settings = _settings(store_url, state_url, emu)
        _store(store_url)
        run_sync(settings, steps=SEND)
        with KlaviyoClient(KEY, emu.base_url) as client:
            result = verify_outbox(open_state(state_url), client, verify_after=dt.timedelta(0),
                                   grace=dt.timedelta(0), max_sends=3, chunk_rows=4)
            assert (result.rows_read, result.details["verified"], result.details["resent"]) == (15, 15, 0)
            assert client.stats.by_endpoint["get_metrics"] == 1

"""The customers step against the emulator: store changes with no event reach Klaviyo on the next
sync (properties, suppressed, unsuppressed), one person keeps one profile through an e-mail change,
and what Klaviyo learned on its own (an unsubscribe) is never lifted."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from kl_sync.app.run import run_sync
from kl_sync.state.dead_letters import list_dead_letters
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.customers import plan_consent
from kl_sync.state.customer_emails import EmailState
from kl_sync.store.contract import customers
from tests.planting import T0, customer, plant
from tests.reliability.helpers import settings_for

KEY = "pk_test_key"
STEPS = ["customers", "send"]


def _sync(store_url: str, state_url: str, emu: Any) -> dict[str, Any]:
    return run_sync(settings_for(store_url, state_url, emu.base_url, KEY), steps=STEPS)


def _change(store: Any, customer_id: int, minutes: int, **values: Any) -> None:
    with store.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == customer_id)
                     .values(updated_at=T0 + dt.timedelta(minutes=minutes), **values))


def _profile(emu: Any, external_id: str) -> dict[str, Any]:
    (found,) = [p for p in emu.profiles() if p["external_id"] == external_id]
    return found


def _suppressed(emu: Any) -> dict[str, str]:
    return {s["email"]: s["reason"] for s in emu.suppressions()}


def test_store_changes_without_events_reach_klaviyo(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    store = plant(store_url, customers_rows=[customer(1), customer(2), customer(3, email=None)])
    counts = _sync(store_url, state_url, emulator)
    assert counts["send"]["sent_profiles"] == 2 and counts["customers"]["dead_letters"] == 0
    assert _profile(emulator, "1")["properties"]["Schedule"] == "Weekly" and not _suppressed(emulator)

    _change(store, 1, 1, schedule="Monthly", box="Fruit Only Box")
    _change(store, 2, 1, status="Dead")
    _sync(store_url, state_url, emulator)
    one = _profile(emulator, "1")
    assert (one["properties"]["Schedule"], one["properties"]["Box"]) == ("Monthly", "Fruit Only Box")
    assert _profile(emulator, "2")["properties"]["Status"] == "Dead"
    assert _suppressed(emulator) == {"c2@example.com": "USER_SUPPRESSED"}

    _change(store, 1, 2, email_subscribed=False)
    _change(store, 2, 2, status="Active")
    _sync(store_url, state_url, emulator)
    assert _suppressed(emulator) == {"c1@example.com": "USER_SUPPRESSED"}

    # A re-read (the lookback, a second run with nothing new) queues nothing.
    again = _sync(store_url, state_url, emulator)
    assert again["customers"]["queued"] == 0


def test_an_email_change_keeps_one_profile_and_dead_suppresses_both_addresses(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    store = plant(store_url, customers_rows=[customer(1, email="old@example.com")])
    _sync(store_url, state_url, emulator)
    _change(store, 1, 1, email="new@example.com")
    _sync(store_url, state_url, emulator)
    profiles = emulator.profiles()
    assert [(p["email"], p["external_id"]) for p in profiles] == [("new@example.com", "1")]

    emulator.plant_suppression("someone@example.com", "HARD_BOUNCE")  # someone else's: stays as it is
    _change(store, 1, 2, status="Dead")
    _sync(store_url, state_url, emulator)
    assert _suppressed(emulator) == {"old@example.com": "USER_SUPPRESSED", "new@example.com": "USER_SUPPRESSED",
                                     "someone@example.com": "HARD_BOUNCE"}


def test_resubscribing_never_lifts_what_klaviyo_learned_on_its_own(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    store = plant(store_url, customers_rows=[customer(1), customer(2)])
    _sync(store_url, state_url, emulator)
    _change(store, 1, 1, status="Dead")
    _change(store, 2, 1, status="Dead")
    _sync(store_url, state_url, emulator)
    emulator.plant_suppression("c2@example.com", "UNSUBSCRIBE")  # clicked "unsubscribe" in a Klaviyo e-mail
    _change(store, 1, 2, status="Active")
    _change(store, 2, 2, status="Active")
    counts = _sync(store_url, state_url, emulator)
    assert counts["send"]["sent_unsuppressions"] == 2
    assert _suppressed(emulator) == {"c2@example.com": "UNSUBSCRIBE"}


def test_a_profile_klaviyo_refuses_to_import_is_a_dead_letter_with_its_reason(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    store = plant(store_url, customers_rows=[customer(1, email="a@example.com"), customer(2, email="b@example.com")])
    _sync(store_url, state_url, emulator)
    # Customer 2 takes customer 1's address in the store: Klaviyo's profile with that e-mail is
    # customer 1's (external id 1), so the import cannot give it external id 2.
    _change(store, 2, 1, email="a@example.com")
    counts = _sync(store_url, state_url, emulator)
    assert counts["send"]["dead_letters"] == 1
    with open_state(state_url).connect() as conn:
        (letter,) = list_dead_letters(conn)
        statuses = dict(conn.execute(select(outbox.c.key, outbox.c.status)).all())
    assert letter["key"].startswith("profile:2:") and "import job" in letter["reason"]
    assert "already exists" in letter["reason"], letter["reason"]
    assert statuses[f"profile:1:{T0.isoformat()}"] == "sent"


def test_plan_consent_closes_the_request_it_replaces():
    known = {"a@x.io": EmailState("a@x.io", 7, True, "profile:7:t1:suppress:a@x.io")}
    plan = plan_consent(7, "a@x.io", False, known, "t2")
    assert [item.key for item in plan.items] == ["profile:7:t2:unsuppress:a@x.io"]
    assert plan.superseded == {"profile:7:t1:suppress:a@x.io": "profile:7:t2:unsuppress:a@x.io"}
    # Subscribed and never suppressed by kl-sync: nothing to lift.
    assert plan_consent(8, "b@x.io", False, {}, "t1").items == []


def test_an_import_job_whose_status_cannot_be_read_leaves_its_profiles_sent(emulator):
    from kl_sync.klaviyo.client import KlaviyoClient
    from kl_sync.klaviyo.profiles import build_profile_bulk_import_bodies, import_job_outcomes

    (batch,) = build_profile_bulk_import_bodies([{"email": "a@example.com", "external_id": "1"}])
    with KlaviyoClient(KEY, base_url=emulator.base_url) as client:
        # Klaviyo answers 404 for the job (never created here): the import is not undone by that.
        assert import_job_outcomes(client, batch, {"data": {"id": "01NOSUCHJOB"}}) == {}


def test_the_bulk_import_leaves_out_nulls_it_cannot_clear():
    from kl_sync.klaviyo.profiles import build_profile_bulk_import_bodies, build_profile_import_body

    profile = {"email": "a@example.com", "external_id": "1", "first_name": None,
               "properties": {"Box": None, "Status": "Active"}}
    (batch,) = build_profile_bulk_import_bodies([profile])
    sent = batch.body["data"]["attributes"]["profiles"]["data"][0]["attributes"]
    assert sent == {"email": "a@example.com", "external_id": "1", "properties": {"Status": "Active"}}
    # The single upsert can clear: null goes as null there.
    assert build_profile_import_body(profile)["data"]["attributes"]["first_name"] is None


def test_consent_lists_subscribed_customers_klaviyo_cannot_email(tmp_path, emulator, capsys):
    """The other direction: what Klaviyo learned on its own is read back (its suppression time is the
    cursor) and the customers the store still believes subscribed are listed, with reason and date."""
    import json

    from kl_sync.app.cli import main

    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    store = plant(store_url, customers_rows=[customer(1), customer(2), customer(3), customer(4, status="Dead")])
    counts = run_sync(settings_for(store_url, state_url, emulator.base_url, KEY), steps=["customers", "send", "consent"])
    assert counts["consent"]["rows_read"] == 1 and counts["consent"]["subscribed_but_blocked"] == 0  # c4: Dead
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    emulator.plant_suppression("c1@example.com", "UNSUBSCRIBE", later.isoformat())
    emulator.plant_suppression("c2@example.com", "HARD_BOUNCE", (later + dt.timedelta(minutes=1)).isoformat())
    _change(store, 3, 1, email_subscribed=False)  # kl-sync suppresses c3: the store knows, not listed

    env = {"KL_SYNC_STORE_URL": store_url, "KL_SYNC_STATE_URL": state_url, "KLAVIYO_BASE_URL": emulator.base_url,
           "KLAVIYO_API_KEY": KEY}
    import os
    from unittest import mock

    from kl_sync.settings import get_settings

    with mock.patch.dict(os.environ, env):
        get_settings.cache_clear()
        run_sync(get_settings(), steps=["customers", "send"])
        assert main(["consent", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["customers"] == [
            {"customer_id": 1, "email": "c1@example.com", "reason": "UNSUBSCRIBE",
             "suppressed_at": later.replace(tzinfo=None).isoformat()},
            {"customer_id": 2, "email": "c2@example.com", "reason": "HARD_BOUNCE",
             "suppressed_at": (later + dt.timedelta(minutes=1)).replace(tzinfo=None).isoformat()},
        ]
        # c3 (suppressed by this sync), c1 and c2, and c4 again (suppressed in the cursor's second,
        # which is read again lest a suppression in that same second be skipped).
        assert report["read"] in (3, 4)
        assert main(["consent", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["read"] == 1  # only the cursor's own second again
    get_settings.cache_clear()

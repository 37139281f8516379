"""send_* over real HTTP: one outcome per input row, bulk chunking, item-level rejections, lists,
client-side events. Every request body the emulator received is checked against the official spec."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kl_sync.emulator import EmulatorHandle, FaultSpec
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.client_events import send_client_events
from kl_sync.klaviyo.errors import AuthError
from kl_sync.klaviyo.events import send_event, send_events
from kl_sync.klaviyo.lists import add_profiles_to_list, create_list
from kl_sync.klaviyo.profiles import send_profile, send_profiles, upsert_profile
from kl_sync.klaviyo.suppressions import send_suppressions
from tests.klaviyo.conftest import PUBLIC_KEY
from tests.klaviyo.factories import event, profile
from tests.spec_oracle import assert_journal_bodies_valid

BULK = "/api/event-bulk-create-jobs"
EVENT_POINTER = "/data/attributes/events-bulk-create/data/{}/attributes/events/data/{}"


def bulk_posts(emu: EmulatorHandle) -> list[dict]:
    return [entry for entry in emu.journal() if entry["method"] == "POST" and entry["path"].rstrip("/") == BULK]


def test_2500_events_go_in_3_requests_and_all_arrive(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    events = [event(n, customer=n % 50, backfill=n < 100) for n in range(2500)]
    outcomes = send_events(client, events)
    assert len(outcomes) == 2500 and {o.status for o in outcomes} == {"sent"}
    entries = bulk_posts(emu)
    assert [entry["status"] for entry in entries] == [202, 202, 202]
    assert client.stats.by_endpoint["bulk_create_events"] == 3
    stored = emu.events()
    assert sorted(e["unique_id"] for e in stored) == sorted(e["unique_id"] for e in events)
    by_id = {e["unique_id"]: e for e in stored}
    assert by_id["order:5:placed"]["backfill"] is True and by_id["order:500:placed"]["backfill"] is False
    assert by_id["order:7:placed"]["profile_email"] == "customer7@example.com"
    assert by_id["order:7:placed"]["value"] == 47.95 and by_id["order:7:placed"]["value_currency"] == "USD"
    assert by_id["order:7:placed"]["properties"] == events[7]["properties"]
    assert assert_journal_bodies_valid(emu.journal()) == 3


def test_a_repeated_unique_id_never_fails_a_request_and_klaviyo_keeps_one(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    # Klaviyo fails a whole bulk request that repeats a unique_id for one profile and metric (the
    # emulator does too); the client spreads repeats over requests, so every row is delivered.
    renamed = profile(4001, email="CUSTOMER4001@example.com", first_name="Renamed")
    events = [event(4001), event(4002), event(4001, profile=renamed), event(4001)]
    outcomes = send_events(client, events)
    assert [o.status for o in outcomes] == ["sent"] * 4
    assert {entry["status"] for entry in bulk_posts(emu)} == {202}
    kept = [e for e in emu.events() if e["unique_id"] == "order:4001:placed"]
    assert len(kept) == 1 and kept[0]["profile_email"].lower() == "customer4001@example.com"


def test_events_that_would_pass_5_mb_are_split_and_all_arrive(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    big = "x" * 60_000
    events = [event(n, customer=n % 4, properties={"Notes": big}) for n in range(90)]
    outcomes = send_events(client, events)
    assert {o.status for o in outcomes} == {"sent"}
    entries = bulk_posts(emu)
    assert [entry["status"] for entry in entries] == [202, 202]
    assert all(int(entry["headers"]["content-length"]) <= 5_000_000 for entry in entries)
    assert len(emu.events()) == 90


def test_a_rejected_item_fails_only_itself_and_the_rest_arrive(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    events = [event(n, customer=n % 3) for n in range(12)]
    # Both schema-valid, both against Klaviyo's rules: a time before 1990, an e-mail that is not one.
    events[4]["time"] = "1985-01-01T00:00:00+00:00"
    events[8]["profile"] = {"email": "not-an-email"}
    outcomes = send_events(client, events)
    assert [o.status for o in outcomes] == ["rejected" if n in (4, 8) else "sent" for n in range(12)]
    # Klaviyo's detail and the pointer, for the dead letter.
    assert "1990" in outcomes[4].reason and "/attributes/time" in outcomes[4].reason
    assert EVENT_POINTER.format(1, 1) in outcomes[4].reason  # customer 1's second event
    assert "email" in outcomes[8].reason.lower()
    stored = sorted(e["unique_id"] for e in emu.events())
    assert stored == sorted(f"order:{n}:placed" for n in range(12) if n not in (4, 8))
    assert [entry["status"] for entry in bulk_posts(emu)] == [400, 202]
    assert assert_journal_bodies_valid(emu.journal()) == 2


def test_a_400_pointing_at_no_item_rejects_the_whole_batch(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    emu.fail_next(BULK, 400)  # an error whose pointer names no event
    outcomes = send_events(client, [event(n) for n in range(1200)])
    assert {o.status for o in outcomes[:1000]} == {"rejected"}
    assert "HTTP 400" in outcomes[0].reason
    assert {o.status for o in outcomes[1000:]} == {"sent"}
    assert len(emu.events()) == 200


def test_an_event_too_big_for_any_body_is_rejected_alone(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    huge = event(10, properties={f"P{k}": "z" * 90_000 for k in range(56)})  # 5.04 MB on its own
    outcomes = send_events(client, [event(1), huge, event(2)])
    assert [o.status for o in outcomes] == ["sent", "rejected", "sent"]
    assert "HTTP 413" in outcomes[1].reason
    assert sorted(e["unique_id"] for e in emu.events()) == ["order:1:placed", "order:2:placed"]


def test_an_exhausted_retry_leaves_only_that_batch_to_retry(
    emu: EmulatorHandle, make_client: Callable[..., KlaviyoClient]
) -> None:
    client = make_client(attempts=2)
    emu.fail_next(BULK, 503, count=2)
    outcomes = send_events(client, [event(n) for n in range(1500)])
    assert {o.status for o in outcomes[:1000]} == {"retry"}
    assert {o.status for o in outcomes[1000:]} == {"sent"}
    assert len(emu.events()) == 500


def test_random_faults_still_deliver_every_event_exactly_once(
    start_emulator: Callable[..., EmulatorHandle], make_client: Callable[..., KlaviyoClient]
) -> None:
    faulty = start_emulator(
        faults=FaultSpec(rate=0.4, mix={"429": 1, "500": 1, "503": 1, "drop": 1, "drop_after_commit": 1},
                         seed=7, retry_after=0.02)
    )
    client = make_client(handle=faulty, attempts=10)
    events = [event(n, customer=n % 30) for n in range(3000)]
    outcomes = send_events(client, events)
    assert {o.status for o in outcomes} == {"sent"}
    assert len(faulty.events()) == 3000
    assert client.stats.retries > 0
    assert assert_journal_bodies_valid(faulty.journal()) == client.stats.requests


def test_send_event_goes_through_the_bulk_path(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    assert send_event(client, event(1)).status == "sent"
    bad = send_event(client, event(2, time="2024-05-15T12:35:32"))
    assert bad.status == "rejected" and "offset" in bad.reason
    assert [e["unique_id"] for e in emu.events()] == ["order:1:placed"]
    assert client.stats.by_endpoint == {"bulk_create_events": 2}


def test_profiles_are_imported_in_bulk_with_item_rejections(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    profiles = [profile(n) for n in range(5)] + [profile(9, email="nope")]
    outcomes = send_profiles(client, profiles)
    assert [o.status for o in outcomes] == ["sent"] * 5 + ["rejected"]
    assert "/data/attributes/profiles/data/5" in outcomes[5].reason
    assert send_profile(client, profile(1, first_name="Renamed")).status == "sent"
    stored = {p["email"]: p for p in emu.profiles()}
    assert set(stored) == {f"customer{n}@example.com" for n in range(5)}
    assert stored["customer1@example.com"]["first_name"] == "Renamed"
    assert stored["customer2@example.com"]["properties"] == profile(2)["properties"]
    assert assert_journal_bodies_valid(emu.journal()) == 3


def test_upsert_profile_returns_the_same_id_for_the_same_email(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    first = upsert_profile(client, profile(1))
    assert upsert_profile(client, profile(1, last_name=None)) == first
    (stored,) = emu.profiles()
    assert stored["id"] == first and stored["last_name"] is None


def test_suppressions_go_100_per_request(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    emails = [f"gone{n}@example.com" for n in range(230)] + ["@broken"]
    outcomes = send_suppressions(client, emails)
    assert [o.status for o in outcomes] == ["sent"] * 230 + ["rejected"]
    statuses = [e["status"] for e in emu.journal() if e["method"] == "POST"]
    assert statuses == [202, 202, 400, 202]  # the third batch, re-sent without the bad address
    assert {s["email"] for s in emu.suppressions()} == set(emails[:230])
    assert assert_journal_bodies_valid(emu.journal()) == 4


def test_lists_are_found_or_created_and_filled_by_email(emu: EmulatorHandle, client: KlaviyoClient) -> None:
    send_profiles(client, [profile(1), profile(2)])
    list_id = create_list(client, "Missed signups")
    assert create_list(client, "Missed signups") == list_id
    emails = ["customer1@example.com", "new.person@example.com", "CUSTOMER2@example.com", "bad address"]
    outcomes = add_profiles_to_list(client, list_id, emails)
    assert [o.status for o in outcomes] == ["sent", "sent", "sent", "rejected"]
    (stored,) = emu.lists()
    assert stored["id"] == list_id
    assert sorted(stored["profile_emails"]) == ["customer1@example.com", "customer2@example.com",
                                                "new.person@example.com"]
    assert assert_journal_bodies_valid(emu.journal()) >= 4


def test_client_events_use_the_public_key_only(emu: EmulatorHandle) -> None:
    events = [event(1, metric="Started Checkout"), event(2, metric="Completed Signup"),
              event(3, metric="Cancelled Account", time="2024-05-15T12:40:28")]
    outcomes = send_client_events(emu.base_url, PUBLIC_KEY, events)
    assert [o.status for o in outcomes] == ["sent", "sent", "rejected"]
    journal = emu.journal()
    assert all(entry["path"].startswith("/client/events") for entry in journal)
    assert all("authorization" not in entry["headers"] for entry in journal)
    assert all(entry["query"]["company_id"] == PUBLIC_KEY for entry in journal)
    stored = emu.events()
    assert [(e["metric"], e["source"]) for e in stored] == [("Started Checkout", "client"), ("Completed Signup", "client")]
    # The event's own time, not the time it was sent.
    assert stored[0]["time"].startswith("2024-05-15T16:36:32")
    assert_journal_bodies_valid([entry for entry in journal if entry["status"] == 202])


def test_client_events_with_a_wrong_company_id_stop(emu: EmulatorHandle) -> None:
    with pytest.raises(AuthError):
        send_client_events(emu.base_url, "WRONGKEY", [event(1)])

"""Pure body builders: shapes valid against the official spec, limits, and row positions kept."""

from __future__ import annotations

import copy
import enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kl_sync.klaviyo.batches import Batch
from kl_sync.klaviyo.client import body_text, encode_body
from kl_sync.klaviyo.client_events import build_client_event_body
from kl_sync.klaviyo.events import EVENTS_POINTER, build_event_body, build_event_bulk_bodies
from kl_sync.klaviyo.lists import build_list_body, build_list_profiles_bodies
from kl_sync.klaviyo.profiles import (
    PROFILES_POINTER,
    build_profile_bulk_import_bodies,
    build_profile_import_body,
)
from kl_sync.klaviyo.suppressions import build_suppression_bodies
from tests.klaviyo.factories import event, profile
from tests.spec_oracle import assert_valid_request, request_errors


def resolve(body: Any, pointer: str) -> Any:
    """The value a JSON pointer names inside ``body``."""
    value = body
    for part in pointer.lstrip("/").split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def bulk_event_attributes(batch: Batch, index_path: tuple[int, ...]) -> dict[str, Any]:
    return resolve(batch.body, batch.pointer(index_path))["attributes"]


# ------------------------------------------------------------------------------------ single bodies


def test_event_body_maps_every_payload_field_and_is_valid_for_create_event() -> None:
    payload = event(7, backfill=True)
    body = build_event_body(payload)
    assert_valid_request("create_event", body)
    attributes = body["data"]["attributes"]
    assert body["data"]["type"] == "event"
    assert attributes["metric"] == {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}}
    assert attributes["time"] == payload["time"]
    assert attributes["unique_id"] == "order:7:placed"
    assert attributes["value"] == 47.95 and attributes["value_currency"] == "USD"
    assert attributes["backfill"] is True
    assert attributes["properties"] == payload["properties"]
    assert attributes["profile"]["data"] == {
        "type": "profile",
        "attributes": {
            "email": "customer7@example.com",
            "first_name": "First7",
            "last_name": "Last7",
            "properties": payload["profile"]["properties"],
        },
    }


def test_client_event_body_is_valid_for_create_client_event_and_keeps_its_time() -> None:
    payload = event(1, metric="Started Checkout")
    body = build_client_event_body(payload)
    assert_valid_request("create_client_event", body)
    assert body["data"]["attributes"]["time"] == payload["time"]


def test_optional_fields_are_left_out_when_absent_and_none_names_are_sent_as_null() -> None:
    payload = event(3)
    for key in ("value", "value_currency", "backfill"):
        payload.pop(key, None)  # type: ignore[misc]
    payload["profile"] = {"email": "x@example.com", "first_name": None}
    body = build_event_body(payload)
    assert_valid_request("create_event", body)
    attributes = body["data"]["attributes"]
    assert not {"value", "value_currency", "backfill"} & set(attributes)
    # Present-but-None clears the field at Klaviyo (the store is the truth); absent leaves it alone.
    assert attributes["profile"]["data"]["attributes"] == {"email": "x@example.com", "first_name": None}


def test_builders_do_not_mutate_input_and_share_no_mutable_state_with_it() -> None:
    events = [event(n, customer=n % 3) for n in range(10)]
    before = copy.deepcopy(events)
    batch = build_event_bulk_bodies(events)[0]
    single = build_event_body(events[0])
    profiles = build_profile_bulk_import_bodies([e["profile"] for e in events])[0]
    assert events == before
    # Scribbling over the output must not reach back into the caller's rows.
    entry = batch.body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    entry["profile"]["data"]["attributes"]["properties"]["Status"] = "changed"
    entry["events"]["data"][0]["attributes"]["properties"]["OrderId"] = "changed"
    single["data"]["attributes"]["properties"]["ItemNames"].append("changed")
    profiles.body["data"]["attributes"]["profiles"]["data"][0]["attributes"]["properties"]["Box"] = "changed"
    assert events == before


def test_the_spec_check_itself_catches_a_misspelt_attribute_and_a_naive_time() -> None:
    body = build_event_body(event(1))
    body["data"]["attributes"]["backfil"] = True
    assert any("backfil" in problem for problem in request_errors("create_event", body))
    body = build_event_body(event(1, time="2024-05-15T12:35:32"))
    assert any("date-time" in problem for problem in request_errors("create_event", body))


# -------------------------------------------------------------------------------------- bulk events


def test_2500_events_make_three_bulk_bodies_of_1000_1000_500_all_valid() -> None:
    events = [event(n, customer=n % 40) for n in range(2500)]
    batches = build_event_bulk_bodies(events)
    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    seen = []
    for batch in batches:
        assert_valid_request("bulk_create_events", batch.body)
        # What goes on the wire is assembled from the parts' encodings: it is the body's encoding.
        assert batch.encoded == encode_body(batch.body) and batch.size == len(batch.encoded)
        seen.extend(batch.input_positions)
    assert sorted(seen) == list(range(2500))


def test_the_bulk_bytes_carry_each_event_and_its_profile_as_the_single_body_builds_them() -> None:
    # The bulk builder keeps only the bytes it sends (Batch.body reads them back), assembled from each
    # event's and profile's own encoding: every event in them must be the one build_event_body makes.
    events = [event(n, customer=n % 7, backfill=n % 2 == 0) for n in range(60)]
    for batch in build_event_bulk_bodies(events):
        assert batch.built is None and batch.encoded is not None
        body = batch.body
        for (entry_index, event_index), position in batch.positions.items():
            single = build_event_body(events[position])["data"]["attributes"]
            entry = body["data"]["attributes"]["events-bulk-create"]["data"][entry_index]["attributes"]
            assert entry["profile"] == single.pop("profile")
            assert entry["events"]["data"][event_index] == {"type": "event", "attributes": single}


def test_bulk_events_are_grouped_one_entry_per_profile_in_first_seen_order() -> None:
    # Interleaved customers 0, 1, 2, 0, 1, 2, ...
    events = [event(n, customer=n % 3) for n in range(9)]
    (batch,) = build_event_bulk_bodies(events)
    entries = batch.body["data"]["attributes"]["events-bulk-create"]["data"]
    assert [e["attributes"]["profile"]["data"]["attributes"]["email"] for e in entries] == [
        "customer0@example.com", "customer1@example.com", "customer2@example.com",
    ]
    assert [[ev["attributes"]["unique_id"] for ev in e["attributes"]["events"]["data"]] for e in entries] == [
        ["order:0:placed", "order:3:placed", "order:6:placed"],
        ["order:1:placed", "order:4:placed", "order:7:placed"],
        ["order:2:placed", "order:5:placed", "order:8:placed"],
    ]
    assert batch.positions == {(0, 0): 0, (0, 1): 3, (0, 2): 6, (1, 0): 1, (1, 1): 4, (1, 2): 7,
                               (2, 0): 2, (2, 1): 5, (2, 2): 8}


def test_every_position_points_at_its_own_input_row() -> None:
    events = [event(n, customer=n % 7) for n in range(2100)]
    for batch in build_event_bulk_bodies(events):
        for index_path, position in batch.positions.items():
            pointer = batch.pointer(index_path)
            assert pointer.startswith(EVENTS_POINTER[0])
            assert batch.positions_for_pointer(pointer) == [position]
            assert batch.positions_for_pointer(pointer + "/attributes/time") == [position]
            assert bulk_event_attributes(batch, index_path)["unique_id"] == events[position]["unique_id"]


def test_a_pointer_at_a_profile_entry_names_all_its_events_and_one_at_no_item_names_none() -> None:
    events = [event(n, customer=n % 2) for n in range(6)]
    (batch,) = build_event_bulk_bodies(events)
    profile_pointer = f"{EVENTS_POINTER[0]}1/attributes/profile/data/attributes/email"
    assert batch.positions_for_pointer(profile_pointer) == [1, 3, 5]
    for pointer in (None, "", "/", "/data/", "/data/attributes/events-bulk-create/data",
                    f"{EVENTS_POINTER[0]}7x/attributes", f"{EVENTS_POINTER[0]}99"):
        assert batch.positions_for_pointer(pointer) == []


def test_a_batch_that_would_pass_5_mb_is_split_below_it() -> None:
    # 90 events of ~60 KB: 5.4 MB in all, under the 1,000-event limit.
    big = "x" * 60_000
    events = [event(n, properties={"Notes": big, "OrderId": str(n)}) for n in range(90)]
    batches = build_event_bulk_bodies(events)
    assert len(batches) == 2
    for batch in batches:
        size = len(encode_body(batch.body))
        assert size == batch.size
        assert size <= 5_000_000
        assert_valid_request("bulk_create_events", batch.body)
    # Full up to the limit: the first batch could not take one more event.
    assert batches[0].size + 60_000 > 5_000_000


def test_the_same_unique_id_twice_never_shares_a_batch() -> None:
    # The bulk spec: a unique_id repeated for a profile and metric fails the whole request.
    events = [event(1), event(2), event(1), event(1)]
    batches = build_event_bulk_bodies(events)
    assert [batch.input_positions for batch in batches] == [[0, 1], [2], [3]]
    # A repeat for another metric is a different event and stays in the first batch.
    events = [event(1), event(1, metric="Fulfilled Order")]
    assert [batch.input_positions for batch in build_event_bulk_bodies(events)] == [[0, 1]]


def test_one_profile_to_klaviyo_is_one_profile_for_the_repeat_rule() -> None:
    # The same e-mail (in another case) with other names is two entries but one Klaviyo profile, so
    # the repeated unique_id would still fail the request: it goes into a batch of its own.
    renamed = profile(1, email="Customer1@Example.com", first_name="Renamed")
    events = [event(1), event(2), event(1, profile=renamed)]
    assert [batch.input_positions for batch in build_event_bulk_bodies(events)] == [[0, 1], [2]]


def test_backfill_goes_on_each_event_not_the_profile_entry() -> None:
    events = [event(1, customer=5, backfill=True), event(2, customer=5)]
    (batch,) = build_event_bulk_bodies(events)
    entry = batch.body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    assert "backfill" not in entry
    assert [e["attributes"].get("backfill") for e in entry["events"]["data"]] == [True, None]


def test_different_profile_data_for_one_email_makes_separate_entries() -> None:
    changed = profile(1, properties={"Status": "Stopped"})
    events = [event(1, customer=1), event(2, customer=1, profile=changed)]
    (batch,) = build_event_bulk_bodies(events)
    entries = batch.body["data"]["attributes"]["events-bulk-create"]["data"]
    assert [e["attributes"]["profile"]["data"]["attributes"].get("properties") for e in entries] == [
        profile(1)["properties"], {"Status": "Stopped"},
    ]


def test_an_event_bigger_than_any_body_still_gets_a_batch_of_its_own() -> None:
    events = [event(1), event(2, properties={"Notes": "y" * 3000}), event(3)]
    batches = build_event_bulk_bodies(events, max_bytes=2500)
    assert [batch.input_positions for batch in batches] == [[0], [1], [2]]


class _Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize("value", [
    {"a": "é ☃", "n": None, "t": True, "i": -(2**63), "f": 47.95, "l": [1, [2, {}]]},
    {"big": 2**70, "level": _Level.HIGH, 3: "a key that is not text"},  # what orjson leaves to the standard library
], ids=["json types", "beyond orjson"])
def test_the_bytes_sent_are_the_standard_librarys_json(value: Any) -> None:
    assert encode_body(value) == body_text(value).encode("utf-8")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("beside", [None, "x"], ids=["beside a null", "alone"])
def test_a_value_json_cannot_carry_is_refused_not_sent_as_null(bad: float, beside: Any) -> None:
    # orjson writes NaN and Infinity as null: the body must fail to build (its row a dead letter), as
    # the standard library's encoder refuses them, whether or not a real null is there too.
    with pytest.raises(ValueError, match="Out of range float"):
        encode_body({"properties": {"x": bad, "y": beside}})
    with pytest.raises(ValueError, match="Out of range float"):
        build_event_bulk_bodies([event(1, value=bad)])


def test_a_lone_surrogate_is_refused_as_before() -> None:
    # orjson refuses it (a TypeError); the standard library it falls back to refuses it on encoding.
    with pytest.raises(ValueError):
        encode_body({"text": "a lone surrogate \ud800"})


def test_no_events_make_no_bodies() -> None:
    assert build_event_bulk_bodies([]) == []
    assert build_profile_bulk_import_bodies([]) == []
    assert build_suppression_bodies([]) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 12), st.sampled_from(["Placed Order", "Ordered Product"]),
                  st.integers(0, 400)),
        max_size=60,
    ),
    max_events=st.integers(1, 12),
    max_bytes=st.integers(1200, 6000),
)
def test_bulk_event_invariants(rows: list[tuple[int, int, str, int]], max_events: int, max_bytes: int) -> None:
    events = [
        event(n, customer=customer, metric=metric, unique_id=f"u{uid}", properties={"Pad": "p" * pad})
        for n, (customer, uid, metric, pad) in enumerate(rows)
    ]
    batches = build_event_bulk_bodies(events, max_events=max_events, max_bytes=max_bytes)
    seen: list[int] = []
    for batch in batches:
        seen.extend(batch.input_positions)
        assert batch.encoded == encode_body(batch.body) and batch.size == len(batch.encoded)
        assert len(batch) <= max_events
        assert batch.size <= max_bytes or len(batch) == 1
        entries = batch.body["data"]["attributes"]["events-bulk-create"]["data"]
        profiles = [encode_body(e["attributes"]["profile"]) for e in entries]
        assert len(profiles) == len(set(profiles)), "one entry per profile within a body"
        keys = [(path[0], events[p]["metric"], events[p]["unique_id"]) for path, p in batch.positions.items()]
        keys = [(profiles[entry], metric, uid) for entry, metric, uid in keys]
        assert len(keys) == len(set(keys)), "a (profile, metric, unique_id) at most once per body"
        for path, position in batch.positions.items():
            assert bulk_event_attributes(batch, path)["unique_id"] == events[position]["unique_id"]
            assert batch.positions_for_pointer(batch.pointer(path)) == [position]
    assert sorted(seen) == list(range(len(events)))


# --------------------------------------------------------------------------- profiles, suppressions, lists


def test_profile_import_body_is_valid_for_create_or_update_profile() -> None:
    body = build_profile_import_body(profile(1))
    assert_valid_request("create_or_update_profile", body)
    assert body == {"data": {"type": "profile", "attributes": {
        "email": "customer1@example.com", "first_name": "First1", "last_name": "Last1",
        "properties": profile(1)["properties"],
    }}}


def test_10001_profiles_make_two_bulk_import_bodies() -> None:
    profiles = [profile(n) for n in range(10_001)]
    batches = build_profile_bulk_import_bodies(profiles)
    assert [len(batch) for batch in batches] == [10_000, 1]
    assert_valid_request("bulk_import_profiles", batches[1].body)
    assert batches[1].positions == {(0,): 10_000}
    assert batches[1].positions_for_pointer(f"{PROFILES_POINTER}0/attributes/email") == [10_000]


def test_bulk_import_bodies_split_at_the_byte_limit() -> None:
    profiles = [profile(n, properties={"Notes": "z" * 50_000}) for n in range(120)]
    batches = build_profile_bulk_import_bodies(profiles)
    assert len(batches) == 2
    assert all(batch.size == len(encode_body(batch.body)) <= 5_000_000 for batch in batches)
    assert_valid_request("bulk_import_profiles", batches[0].body)
    assert sum(len(batch) for batch in batches) == 120


def test_suppressions_go_100_per_body() -> None:
    emails = [f"gone{n}@example.com" for n in range(250)]
    batches = build_suppression_bodies(emails)
    assert [len(batch) for batch in batches] == [100, 100, 50]
    for batch in batches:
        assert_valid_request("bulk_suppress_profiles", batch.body)
    assert batches[2].body["data"]["attributes"]["profiles"]["data"][0] == {
        "type": "profile", "attributes": {"email": "gone200@example.com"},
    }
    assert batches[1].positions_for_pointer(f"{PROFILES_POINTER}3/attributes/email") == [103]


def test_list_bodies_are_valid() -> None:
    assert_valid_request("create_list", build_list_body("Missed signups"))
    batches = build_list_profiles_bodies([f"01PROFILE{n:05d}" for n in range(2500)])
    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    for batch in batches:
        assert_valid_request("add_profiles_to_list", batch.body)
    assert batches[1].positions_for_pointer("/data/5/id") == [1005]

"""Klaviyo's per-request limits: counts, body size and string size."""

from __future__ import annotations

import json

import pytest

from tests.emulator.klaviyo_bodies import (
    bulk_entry,
    bulk_events,
    bulk_profiles,
    event,
    pointers,
    profile,
    profile_import,
    single_event,
    suppression,
)


def _events_for(email: str, count: int, tag: str) -> dict:
    return bulk_events([bulk_entry(email, [event(unique_id=f"{tag}:{i}") for i in range(count)])])


def test_1000_events_are_accepted_and_1001_rejected_whole(fresh_emu, fresh_api):
    response = fresh_api.post("/api/event-bulk-create-jobs", _events_for("many@example.com", 1001, "over"))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/events-bulk-create/data"]
    assert fresh_emu.events() == []
    response = fresh_api.post("/api/event-bulk-create-jobs", _events_for("many@example.com", 1000, "ok"))
    assert response.status_code == 202
    assert len(fresh_emu.events()) == 1000


def test_1000_events_counted_across_profiles(api):
    entries = [
        bulk_entry(f"p{i}@example.com", [event(unique_id=f"a{i}"), event(unique_id=f"b{i}")]) for i in range(501)
    ]
    response = api.post("/api/event-bulk-create-jobs", bulk_events(entries))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/events-bulk-create/data"]


def test_100_suppressions_are_accepted_and_101_rejected(fresh_emu, fresh_api):
    emails = [f"s{i}@example.com" for i in range(101)]
    response = fresh_api.post("/api/profile-suppression-bulk-create-jobs", suppression(emails))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/profiles/data"]
    assert fresh_emu.suppressions() == []
    assert fresh_api.post("/api/profile-suppression-bulk-create-jobs", suppression(emails[:100])).status_code == 202
    assert len(fresh_emu.suppressions()) == 100


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("x" * 100_000, True),
        ("x" * 100_001, False),
        ("é" * 50_000, True),
        ("é" * 50_001, False),
        ('"' * 60_000, True),  # 120 kB of JSON text, 60 kB of string
        ('a"' * 50_001, False),  # quotes split its JSON text into short runs
    ],
)
def test_a_string_over_100_kb_is_rejected_at_its_pointer(api, value, accepted):
    body = single_event(properties={"Note": value, "Nested": [{"ok": "short"}]})
    response = api.post("/api/events", body)
    if accepted:
        assert response.status_code == 202
    else:
        assert response.status_code == 400
        assert pointers(response) == ["/data/attributes/properties/Note"]


def test_a_long_string_deep_in_a_bulk_request_is_found(api):
    entries = [bulk_entry(f"d{i}@example.com", [event(unique_id=f"d{i}")]) for i in range(3)]
    entries[2]["attributes"]["events"]["data"][0]["attributes"]["properties"] = {"Items": [{"Html": "y" * 100_001}]}
    response = api.post("/api/event-bulk-create-jobs", bulk_events(entries))
    assert response.status_code == 400
    assert pointers(response) == [
        "/data/attributes/events-bulk-create/data/2/attributes/events/data/0/attributes/properties/Items/0/Html"
    ]


def test_a_body_over_5_mb_is_413(fresh_emu, fresh_api):
    # 60 strings of 90 kB: each string is fine, the body (5.4 MB) is not.
    properties = {f"Chunk{i}": "z" * 90_000 for i in range(60)}
    body = _events_for("big@example.com", 1, "big")
    body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["events"]["data"][0]["attributes"][
        "properties"
    ] = properties
    assert len(json.dumps(body)) > 5_000_000
    response = fresh_api.post("/api/event-bulk-create-jobs", body)
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "payload_too_large"
    assert fresh_emu.events() == []
    (line,) = fresh_emu.journal()
    assert line["body"] is None and line["body_bytes"] > 5_000_000


def test_profile_import_over_100_kb_is_413(api):
    body = profile_import("big@example.com", properties={"Notes": ["n" * 50_000, "m" * 50_000]})
    assert api.post("/api/profile-import", body).status_code == 413


def test_bulk_import_takes_10000_profiles_and_each_at_most_100_kb(fresh_emu, fresh_api):
    too_many = bulk_profiles([profile(f"i{i}@example.com") for i in range(10_001)])
    response = fresh_api.post("/api/profile-bulk-import-jobs", too_many)
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/profiles/data"]
    heavy = profile("heavy@example.com", properties={"A": "a" * 60_000, "B": "b" * 60_000})
    response = fresh_api.post("/api/profile-bulk-import-jobs", bulk_profiles([profile("light@example.com"), heavy]))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/profiles/data/1"]
    assert fresh_emu.profiles() == []

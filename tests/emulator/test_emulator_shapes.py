"""Request shapes per the spec, and Klaviyo's field rules: every bad item answered with its pointer,
and nothing stored from a rejected request."""

from __future__ import annotations

import pytest
import requests

from tests.emulator.klaviyo_bodies import (
    bulk_entry,
    bulk_events,
    event,
    headers,
    new_list,
    pointers,
    profile_import,
    single_event,
)
from tests.spec_oracle import assert_error_body

BULK = "/data/attributes/events-bulk-create/data"


def _good_entries(count: int, tag: str) -> list[dict]:
    return [bulk_entry(f"{tag}-{i}@example.com", [event(unique_id=f"{tag}:{i}")]) for i in range(count)]


def test_every_bad_item_of_a_bulk_request_is_reported_at_its_pointer(fresh_emu, fresh_api):
    entries = _good_entries(20, "shape")
    entries[17]["attributes"]["events"]["data"][0]["attributes"]["time"] = 1715790932
    del entries[3]["attributes"]["events"]["data"][0]["attributes"]["metric"]
    entries[4]["attributes"]["bogus"] = True
    entries[5]["attributes"]["profile"]["data"]["attributes"]["email"] = "not-an-email"
    entries[6]["attributes"]["events"]["data"][0]["attributes"]["time"] = "2024-05-15T12:35:32"
    entries[7]["attributes"]["profile"]["data"]["attributes"] = {"first_name": "Anon"}
    entries[8]["attributes"]["events"]["data"].append(event(time="15/05/2024", unique_id="x"))
    response = fresh_api.post("/api/event-bulk-create-jobs", bulk_events(entries))
    assert response.status_code == 400
    assert_error_body(response)
    assert sorted(pointers(response)) == sorted(
        [
            f"{BULK}/17/attributes/events/data/0/attributes/time",
            f"{BULK}/3/attributes/events/data/0/attributes/metric",
            f"{BULK}/4/attributes/bogus",
            f"{BULK}/5/attributes/profile/data/attributes/email",
            f"{BULK}/6/attributes/events/data/0/attributes/time",
            f"{BULK}/7/attributes/profile/data",
            f"{BULK}/8/attributes/events/data/1/attributes/time",
        ]
    )
    assert {e["code"] for e in response.json()["errors"]} == {"invalid"}
    assert fresh_emu.events() == [] and fresh_emu.profiles() == []


def test_the_valid_rest_goes_through_when_the_bad_items_are_left_out(fresh_emu, fresh_api):
    entries = _good_entries(5, "rest")
    entries[2]["attributes"]["profile"]["data"]["attributes"]["email"] = "broken@"
    assert fresh_api.post("/api/event-bulk-create-jobs", bulk_events(entries)).status_code == 400
    del entries[2]
    assert fresh_api.post("/api/event-bulk-create-jobs", bulk_events(entries)).status_code == 202
    assert sorted(e["unique_id"] for e in fresh_emu.events()) == ["rest:0", "rest:1", "rest:3", "rest:4"]


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda b: b.pop("data"), "/data"),
        (lambda b: b["data"].update(type="events"), "/data/type"),
        (lambda b: b["data"]["attributes"].pop("properties"), "/data/attributes/properties"),
        (lambda b: b["data"]["attributes"].update(value="9.99"), "/data/attributes/value"),
        (lambda b: b["data"]["attributes"].update(backfill="yes"), "/data/attributes/backfill"),
        (lambda b: b["data"]["attributes"]["metric"]["data"]["attributes"].update(name=""),
         "/data/attributes/metric/data/attributes/name"),
        (lambda b: b["data"]["attributes"]["metric"]["data"]["attributes"].update(name="x" * 128),
         "/data/attributes/metric/data/attributes/name"),
        (lambda b: b["data"]["attributes"].update(time="1989-12-31T23:59:59+00:00"), "/data/attributes/time"),
        (lambda b: b["data"]["attributes"].update(time="2999-01-01T00:00:00+00:00"), "/data/attributes/time"),
        (lambda b: b["data"]["attributes"]["profile"]["data"]["attributes"].update(phone_number="555-1234"),
         "/data/attributes/profile/data/attributes/phone_number"),
        (lambda b: b["data"]["attributes"].update(properties={f"p{i}": i for i in range(401)}),
         "/data/attributes/properties"),
    ],
)
def test_single_event_rules(api, mutate, pointer):
    body = single_event()
    mutate(body)
    response = api.post("/api/events", body)
    assert response.status_code == 400
    assert pointers(response) == [pointer]


@pytest.mark.parametrize(
    "time", ["2024-05-15T12:35:32-04:00", "2024-05-15T16:35:32Z", "2024-05-15T16:35:32.999+00:00", None]
)
def test_event_times_with_an_offset_are_accepted_and_kept_in_utc_to_the_second(fresh_emu, fresh_api, time):
    assert fresh_api.post("/api/events", single_event(time=time)).status_code == 202
    (stored,) = fresh_emu.events()
    if time is not None:
        assert stored["time"] == "2024-05-15T16:35:32+00:00"
    else:  # "By default, the time the request was received will be used."
        assert stored["time"].endswith("+00:00")


def test_malformed_json_is_a_parse_error(api):
    for raw in (b"{", b'{"data": NaN}', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        response = api.session.post(f"{api.base_url}/api/events", data=raw, timeout=30)
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "parse_error"


def test_a_body_that_is_not_json_api_is_415(emu):
    hdrs = headers()
    hdrs["Content-Type"] = "text/plain"
    response = requests.post(f"{emu.base_url}/api/events", data="{}", headers=hdrs, timeout=30)
    assert response.status_code == 415
    hdrs["Content-Type"] = "application/json"
    assert requests.post(f"{emu.base_url}/api/events", json=single_event(), headers=hdrs, timeout=30).status_code == 202


def test_profile_import_points_at_a_bad_email(api):
    response = api.post("/api/profile-import", profile_import("sarah@@example"))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/email"]


def test_a_profile_without_identifier_is_rejected(api):
    response = api.post("/api/profile-import", profile_import(None, first_name="Nobody"))
    assert response.status_code == 400
    assert pointers(response) == ["/data"]


def test_a_list_needs_a_name(api):
    body = new_list("x")
    del body["data"]["attributes"]["name"]
    response = api.post("/api/lists", body)
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/name"]

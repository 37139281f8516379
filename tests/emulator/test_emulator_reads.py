"""Reading the account back: filters, sorting, includes and cursor paging, as the spec describes."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kl_sync.emulator import EmulatorHandle, running_emulator
from tests.emulator.klaviyo_bodies import Api, bulk_entry, bulk_events, event, profile_import
from tests.spec_oracle import assert_response_valid

PEOPLE = [f"reader{i}@example.com" for i in range(5)]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorHandle, Api]]:
    """450 events: 5 people x 90 minutes of 2024-05-15 (one event a minute), alternating two metrics."""
    with running_emulator(Path(tmp_path_factory.mktemp("reads"))) as emu:
        api = Api(emu.base_url)
        entries = []
        for p, email in enumerate(PEOPLE):
            events = [
                event(
                    "Placed Order" if minute % 2 == 0 else "Fulfilled Order",
                    time=f"2024-05-15T10:{minute % 60:02d}:00+00:00" if minute < 60
                    else f"2024-05-15T11:{minute - 60:02d}:00+00:00",
                    unique_id=f"{p}:{minute}",
                    properties={"Person": p, "Minute": minute},
                )
                for minute in range(90)
            ]
            entries.append(bulk_entry(email, events, first_name=f"R{p}"))
        assert api.post("/api/event-bulk-create-jobs", bulk_events(entries)).status_code == 202
        yield emu, api


def _all_pages(api: Api, path: str, params: dict) -> tuple[list[dict], int]:
    response = api.get(path, params)
    assert response.status_code == 200, response.text
    data, pages = list(response.json()["data"]), 1
    while "next" in response.json()["links"]:
        response = api.get_url(response.json()["links"]["next"])
        assert response.status_code == 200, response.text
        data += response.json()["data"]
        pages += 1
    return data, pages


def _metric_ids(api: Api) -> dict[str, str]:
    return {m["attributes"]["name"]: m["id"] for m in api.get("/api/metrics").json()["data"]}


def test_events_page_200_by_default_with_full_next_links(seeded):
    emu, api = seeded
    first = api.get("/api/events")
    assert_response_valid("get_events", first)
    assert len(first.json()["data"]) == 200
    assert first.json()["links"]["next"].startswith(f"{emu.base_url}/api/events?")
    data, pages = _all_pages(api, "/api/events", {})
    assert pages == 3 and len(data) == 450
    assert len({item["id"] for item in data}) == 450
    times = [item["attributes"]["timestamp"] for item in data]
    assert times == sorted(times)


def test_event_resources_carry_klaviyo_attributes_and_relationships(seeded):
    emu, api = seeded
    item = api.get("/api/events", {"page[size]": 1}).json()["data"][0]
    attributes = item["attributes"]
    assert attributes["datetime"] == "2024-05-15T10:00:00+00:00"
    assert attributes["timestamp"] == 1715767200
    assert attributes["event_properties"]["Minute"] == 0
    assert attributes["event_properties"]["$event_id"] == "0:0"
    assert attributes["uuid"]
    stored = {e["id"]: e for e in emu.events()}[item["id"]]
    assert item["relationships"]["profile"]["data"] == {"type": "profile", "id": stored["profile_id"]}
    assert item["relationships"]["metric"]["data"]["type"] == "metric"


def test_filters_by_metric_profile_and_time_combined(seeded):
    emu, api = seeded
    placed = _metric_ids(api)["Placed Order"]
    profile_id = next(p["id"] for p in emu.profiles() if p["email"] == PEOPLE[2])
    window = (
        f'and(equals(metric_id,"{placed}"),equals(profile_id,"{profile_id}"),'
        "greater-or-equal(datetime,2024-05-15T10:30:00Z),less-than(datetime,2024-05-15T11:00:00+00:00))"
    )
    data, _ = _all_pages(api, "/api/events", {"filter": window, "page[size]": 4})
    assert [item["attributes"]["event_properties"]["Minute"] for item in data] == list(range(30, 60, 2))
    assert {item["attributes"]["event_properties"]["Person"] for item in data} == {2}
    comma = window.removeprefix("and(").removesuffix(")")
    same, _ = _all_pages(api, "/api/events", {"filter": comma, "page[size]": 7})
    assert [item["id"] for item in same] == [item["id"] for item in data]


def test_sort_newest_first_pages_back_in_time(seeded):
    _, api = seeded
    data, pages = _all_pages(api, "/api/events", {"sort": "-datetime", "page[size]": 1000})
    assert pages == 1
    times = [item["attributes"]["timestamp"] for item in data]
    assert times == sorted(times, reverse=True)


def test_include_metric_and_profile(seeded):
    _, api = seeded
    response = api.get("/api/events", {"include": "metric,profile", "page[size]": 3})
    assert_response_valid("get_events", response)
    included = response.json()["included"]
    kinds = {(item["type"], item["id"]) for item in included}
    for item in response.json()["data"]:
        for name in ("metric", "profile"):
            data = item["relationships"][name]["data"]
            assert (data["type"], data["id"]) in kinds
    assert {item["type"] for item in included} == {"metric", "profile"}


def test_sparse_fieldsets(seeded):
    _, api = seeded
    item = api.get("/api/events", {"fields[event]": "datetime", "page[size]": 1}).json()["data"][0]
    assert set(item["attributes"]) == {"datetime"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"page[size]": 1001}, "page[size]"),
        ({"page[size]": 0}, "page[size]"),
        ({"page_size": 10}, "page_size"),
        ({"sort": "metric"}, "sort"),
        ({"include": "campaign"}, "include"),
        ({"filter": 'equals(metric_id,"x"'}, "filter"),
        ({"filter": "equals(metric_id,unquoted)"}, "filter"),
        ({"filter": 'equals(datetime,"2024-01-01")'}, "filter"),
        ({"filter": 'equals(email,"a@b.c")'}, "filter"),
        ({"filter": 'or(equals(metric_id,"a"),equals(metric_id,"b"))'}, "filter"),
        ({"filter": "has(profile)"}, "filter"),
        ({"filter": "greater-than(datetime,yesterday)"}, "filter"),
        ({"page[cursor]": "garbage"}, "page[cursor]"),
    ],
)
def test_bad_read_parameters_are_400_on_that_parameter(seeded, params, parameter):
    _, api = seeded
    response = api.get("/api/events", params)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["source"] == {"parameter": parameter}


def test_profiles_filter_by_email_case_insensitively_and_page(seeded):
    _, api = seeded
    response = api.get("/api/profiles", {"filter": f'equals(email,"{PEOPLE[3].upper()}")'})
    assert_response_valid("get_profiles", response)
    (found,) = response.json()["data"]
    assert found["attributes"]["email"] == PEOPLE[3]
    assert found["attributes"]["first_name"] == "R3"
    assert found["attributes"]["last_event_date"] == "2024-05-15T11:29:00+00:00"
    several = api.get("/api/profiles", {"filter": f'any(email,["{PEOPLE[0]}","{PEOPLE[4]}","nobody@x.io"])'})
    assert sorted(p["attributes"]["email"] for p in several.json()["data"]) == [PEOPLE[0], PEOPLE[4]]
    data, pages = _all_pages(api, "/api/profiles", {"page[size]": 2, "sort": "-email"})
    assert pages == 3
    assert [p["attributes"]["email"] for p in data] == sorted(PEOPLE, reverse=True)


def test_profiles_created_after_a_time(fresh_api):
    fresh_api.post("/api/profile-import", profile_import("x@example.com"))
    after = fresh_api.get("/api/profiles", {"filter": "greater-than(created,2020-01-01T00:00:00Z)"})
    assert len(after.json()["data"]) == 1
    assert fresh_api.get("/api/profiles", {"filter": "less-than(created,2020-01-01T00:00:00Z)"}).json()["data"] == []


def test_metrics_list_and_filter(seeded):
    _, api = seeded
    response = api.get("/api/metrics")
    assert_response_valid("get_metrics", response)
    assert sorted(m["attributes"]["name"] for m in response.json()["data"]) == ["Fulfilled Order", "Placed Order"]
    assert len(api.get("/api/metrics", {"filter": 'equals(integration.name,"API")'}).json()["data"]) == 2
    assert api.get("/api/metrics", {"filter": 'equals(integration.name,"Shopify")'}).json()["data"] == []

"""Profiles, bulk import jobs, suppressions and lists."""

from __future__ import annotations

from tests.emulator.klaviyo_bodies import bulk_profiles, new_list, pointers, profile, profile_import, suppression
from tests.spec_oracle import assert_response_valid


def test_profile_import_creates_201_then_updates_200_merging_by_email(fresh_emu, fresh_api):
    created = fresh_api.post("/api/profile-import", profile_import("Sarah@Example.com", first_name="Sarah",
                                                                    properties={"Status": "Active"}))
    assert created.status_code == 201
    assert_response_valid("create_or_update_profile", created)
    updated = fresh_api.post("/api/profile-import", profile_import("sarah@example.com", last_name="Mason",
                                                                    properties={"Box": "Large"}))
    assert updated.status_code == 200
    assert_response_valid("create_or_update_profile", updated)
    assert updated.json()["data"]["id"] == created.json()["data"]["id"]
    attributes = updated.json()["data"]["attributes"]
    assert (attributes["first_name"], attributes["last_name"]) == ("Sarah", "Mason")
    assert attributes["properties"] == {"Status": "Active", "Box": "Large"}
    assert len(fresh_emu.profiles()) == 1


def test_null_clears_an_attribute_and_absence_keeps_it(fresh_emu, fresh_api):
    fresh_api.post("/api/profile-import", profile_import("a@example.com", first_name="A", last_name="B"))
    fresh_api.post("/api/profile-import", profile_import("a@example.com", first_name=None))
    (person,) = fresh_emu.profiles()
    assert person["first_name"] is None and person["last_name"] == "B"


def test_patch_properties_append_unappend_unset(fresh_emu, fresh_api):
    fresh_api.post("/api/profile-import", profile_import("a@example.com", properties={"Skus": ["1"], "Old": 1}))
    body = profile_import("a@example.com")
    body["data"]["meta"] = {"patch_properties": {"append": {"Skus": "2"}, "unappend": {"Skus": "1"}, "unset": "Old"}}
    assert fresh_api.post("/api/profile-import", body).status_code == 200
    assert fresh_emu.profiles()[0]["properties"] == {"Skus": ["2"]}


def test_an_identifier_held_by_another_profile_is_a_409(fresh_api):
    a = fresh_api.post("/api/profile-import", profile_import("a@example.com")).json()["data"]["id"]
    fresh_api.post("/api/profile-import", profile_import("b@example.com"))
    body = {"data": {"type": "profile", "id": a, "attributes": {"email": "b@example.com"}}}
    response = fresh_api.post("/api/profile-import", body)
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "duplicate_profile"
    assert pointers(response) == ["/data/attributes/email"]


def test_bulk_import_job_is_queued_then_complete_and_fills_lists(fresh_emu, fresh_api):
    made = fresh_api.post("/api/lists", new_list("Newsletter"))
    assert made.status_code == 201
    assert_response_valid("create_list", made)
    list_id = made.json()["data"]["id"]
    profiles = [profile(f"u{i}@example.com", first_name=f"U{i}", properties={"Box": "Small"}) for i in range(25)]
    response = fresh_api.post("/api/profile-bulk-import-jobs", bulk_profiles(profiles, (list_id,)))
    assert response.status_code == 202
    assert_response_valid("bulk_import_profiles", response)
    job = response.json()["data"]
    assert job["attributes"]["status"] == "queued" and job["attributes"]["total_count"] == 25
    polled = fresh_api.get(f"/api/profile-bulk-import-jobs/{job['id']}", {"include": "lists"})
    assert_response_valid("get_bulk_import_profiles_job", polled)
    attributes = polled.json()["data"]["attributes"]
    assert (attributes["status"], attributes["completed_count"], attributes["failed_count"]) == ("complete", 25, 0)
    assert [item["id"] for item in polled.json()["included"]] == [list_id]
    assert len(fresh_emu.profiles()) == 25
    (newsletter,) = fresh_emu.lists()
    assert sorted(newsletter["profile_emails"]) == sorted(f"u{i}@example.com" for i in range(25))


def test_bulk_import_into_an_unknown_list_is_rejected(fresh_emu, fresh_api):
    response = fresh_api.post("/api/profile-bulk-import-jobs", bulk_profiles([profile("x@example.com")], ("nope",)))
    assert response.status_code == 404
    assert pointers(response) == ["/data/relationships/lists/data/0/id"]
    assert fresh_emu.profiles() == []


def test_unknown_job_is_404(fresh_api):
    assert fresh_api.get("/api/profile-bulk-import-jobs/01ABC").status_code == 404
    assert fresh_api.get("/api/profile-suppression-bulk-create-jobs/01ABC").status_code == 404


def test_suppression_creates_missing_profiles_and_shows_them_suppressed(fresh_emu, fresh_api):
    fresh_api.post("/api/profile-import", profile_import("Known@example.com"))
    response = fresh_api.post("/api/profile-suppression-bulk-create-jobs",
                              suppression(["known@example.com", "new@example.com"]))
    assert response.status_code == 202
    assert_response_valid("bulk_suppress_profiles", response)
    job_id = response.json()["data"]["id"]
    again = fresh_api.post("/api/profile-suppression-bulk-create-jobs", suppression(["NEW@example.com"]))
    assert again.status_code == 202
    polled = fresh_api.get(f"/api/profile-suppression-bulk-create-jobs/{job_id}")
    assert_response_valid("get_bulk_suppress_profiles_job", polled)
    assert polled.json()["data"]["attributes"]["completed_count"] == 2
    repeat = fresh_api.get(f"/api/profile-suppression-bulk-create-jobs/{again.json()['data']['id']}").json()
    assert repeat["data"]["attributes"]["skipped_count"] == 1
    assert sorted(s["email"] for s in fresh_emu.suppressions()) == ["known@example.com", "new@example.com"]
    assert all(s["time"].endswith("+00:00") for s in fresh_emu.suppressions())
    listed = fresh_api.get("/api/profiles", {"additional-fields[profile]": "subscriptions"})
    assert_response_valid("get_profiles", listed)
    for item in listed.json()["data"]:
        marketing = item["attributes"]["subscriptions"]["email"]["marketing"]
        assert marketing["can_receive_email_marketing"] is False
        assert marketing["suppression"][0]["reason"] == "USER_SUPPRESSED"


def test_suppressing_a_list_suppresses_its_members(fresh_emu, fresh_api):
    list_id = fresh_api.post("/api/lists", new_list("Dead")).json()["data"]["id"]
    ids = [fresh_api.post("/api/profile-import", profile_import(f"d{i}@example.com")).json()["data"]["id"]
           for i in range(3)]
    body = {"data": [{"type": "profile", "id": i} for i in ids]}
    assert fresh_api.post(f"/api/lists/{list_id}/relationships/profiles", body).status_code == 204
    job = {"data": {"type": "profile-suppression-bulk-create-job", "attributes": {},
                    "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}
    assert fresh_api.post("/api/profile-suppression-bulk-create-jobs", job).status_code == 202
    assert sorted(s["email"] for s in fresh_emu.suppressions()) == [f"d{i}@example.com" for i in range(3)]


def test_adding_unknown_profiles_to_a_list_points_at_them(fresh_api):
    list_id = fresh_api.post("/api/lists", new_list("L")).json()["data"]["id"]
    known = fresh_api.post("/api/profile-import", profile_import("k@example.com")).json()["data"]["id"]
    body = {"data": [{"type": "profile", "id": known}, {"type": "profile", "id": "missing"}]}
    response = fresh_api.post(f"/api/lists/{list_id}/relationships/profiles", body)
    assert response.status_code == 404
    assert pointers(response) == ["/data/1/id"]
    assert fresh_api.post("/api/lists/nolist/relationships/profiles", {"data": []}).status_code == 404


def test_lists_page_ten_at_a_time(fresh_api):
    for i in range(12):
        assert fresh_api.post("/api/lists", new_list(f"List {i:02d}")).status_code == 201
    first = fresh_api.get("/api/lists")
    assert_response_valid("get_lists", first)
    second = fresh_api.get_url(first.json()["links"]["next"])
    names = [item["attributes"]["name"] for item in first.json()["data"] + second.json()["data"]]
    assert names == [f"List {i:02d}" for i in range(12)]
    assert "next" not in second.json()["links"]
    found = fresh_api.get("/api/lists", {"filter": 'equals(name,"List 07")'}).json()["data"]
    assert [item["attributes"]["name"] for item in found] == ["List 07"]
    assert fresh_api.get("/api/lists", {"page[size]": 11}).status_code == 400

"""Who may call: private key on /api/*, public key on /client/*, and the revision header."""

from __future__ import annotations

import pytest
import requests

from tests.emulator.klaviyo_bodies import REVISION, headers, single_event


def _post_event(emu, hdrs):
    return requests.post(f"{emu.base_url}/api/events", json=single_event(), headers=hdrs, timeout=30)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "pk_test", "Bearer pk_test", "Klaviyo-API-Key", "Klaviyo-API-Key   "],
)
def test_missing_or_malformed_key_is_401_not_authenticated(emu, authorization):
    hdrs = headers(key=None)
    if authorization is not None:
        hdrs["Authorization"] = authorization
    response = _post_event(emu, hdrs)
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert error["code"] == "not_authenticated"
    assert error["status"] == 401
    assert {"id", "title", "detail"} <= set(error)


def test_unknown_key_is_401_and_names_no_key(emu):
    response = _post_event(emu, headers(key="pk_guess"))
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "authentication_failed"
    assert "pk_guess" not in response.text


def test_revoked_key_is_403_permission_denied(emu):
    response = _post_event(emu, headers(key="pk_revoked"))
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "permission_denied"


def test_accepted_key_is_case_sensitive_in_the_value_but_not_the_scheme(emu):
    hdrs = headers(key=None)
    hdrs["Authorization"] = "klaviyo-api-key pk_test"
    assert _post_event(emu, hdrs).status_code == 202
    hdrs["Authorization"] = "Klaviyo-API-Key PK_TEST"
    assert _post_event(emu, hdrs).status_code == 401


@pytest.mark.parametrize("revision", [None, "", "yesterday", "2026-13-01", "2026-07-15-x", "2019-01-01"])
def test_missing_or_invalid_revision_is_400_on_the_revision_parameter(emu, revision):
    hdrs = headers(revision=None)
    if revision is not None:
        hdrs["revision"] = revision
    response = _post_event(emu, hdrs)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "revision"}


@pytest.mark.parametrize("revision", [REVISION, "2024-10-15", "2024-10-15.pre"])
def test_dated_revisions_are_accepted(emu, revision):
    assert _post_event(emu, headers(revision=revision)).status_code == 202


def test_client_events_need_the_public_key_not_the_private_one(fresh_emu):
    url = f"{fresh_emu.base_url}/client/events"
    hdrs = headers(key=None)
    missing = requests.post(url, json=single_event(), headers=hdrs, timeout=30)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["source"] == {"parameter": "company_id"}
    wrong = requests.post(url, params={"company_id": "pk_test"}, json=single_event(), headers=hdrs, timeout=30)
    assert wrong.status_code == 401
    right = requests.post(
        url, params={"company_id": fresh_emu.public_key}, json=single_event(), headers=hdrs, timeout=30
    )
    assert right.status_code == 202
    assert [e["source"] for e in fresh_emu.events()] == ["client"]


def test_unknown_path_is_klaviyos_404(emu):
    response = requests.get(f"{emu.base_url}/api/campaigns", headers=headers(), timeout=30)
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_wrong_method_is_405(emu):
    response = requests.delete(f"{emu.base_url}/api/events", headers=headers(), timeout=30)
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_legacy_track_and_identify_are_gone(emu):
    for path in ("/api/track", "/api/identify"):
        response = requests.post(f"{emu.base_url}{path}", data={"data": "e30="}, timeout=30)
        assert response.status_code == 410
        assert response.json()["errors"][0]["code"] == "gone"


def test_trailing_slash_paths_are_the_same_endpoint(emu, email):
    response = requests.post(f"{emu.base_url}/api/events/", json=single_event(email), headers=headers(), timeout=30)
    assert response.status_code == 202
    assert [e["profile_email"] for e in emu.events() if e["profile_email"] == email] == [email]

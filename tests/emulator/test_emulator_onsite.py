"""The browser's side of the emulator: klaviyo.js at the loader's URLs, CORS on ``/client/*`` only,
and ``POST /client/profiles`` (create_client_profile)."""

from __future__ import annotations

import requests

from tests.emulator.klaviyo_bodies import headers, single_event
from tests.spec_oracle import assert_valid_request

PREFLIGHT = {"Origin": "http://shop.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,revision"}


def _client_profile(email="web@example.com", **attributes):
    return {"data": {"type": "profile", "attributes": {"email": email, **attributes}}}


def test_klaviyo_js_is_served_at_both_loader_urls_with_the_account_filled_in(fresh_emu):
    by_path = requests.get(f"{fresh_emu.base_url}/onsite/js/{fresh_emu.public_key}/klaviyo.js", timeout=30)
    by_query = requests.get(f"{fresh_emu.base_url}/onsite/js/klaviyo.js",
                            params={"company_id": fresh_emu.public_key}, timeout=30)
    for answer in (by_path, by_query):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
        assert f'var COMPANY_ID = "{fresh_emu.public_key}";' in answer.text
        assert f'var API = "{fresh_emu.base_url}";' in answer.text
        assert not any(f'"{name}"' in answer.text for name in ("__API__", "__COMPANY__", "__REVISION__"))
    quoted = requests.get(f"{fresh_emu.base_url}/onsite/js/klaviyo.js", params={"company_id": 'a"b</script>'},
                          timeout=30)
    assert 'var COMPANY_ID = "a\\"b</script>";' in quoted.text  # a JSON string literal, whatever the key
    missing = requests.get(f"{fresh_emu.base_url}/onsite/js/klaviyo.js", timeout=30)
    assert missing.status_code == 400


def test_client_operations_answer_cors_and_private_ones_do_not(fresh_emu):
    for path in ("/client/events", "/client/profiles"):
        preflight = requests.options(f"{fresh_emu.base_url}{path}", headers=PREFLIGHT, timeout=30)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert preflight.headers["access-control-allow-methods"] == "POST"
        assert {"content-type", "revision"} <= set(preflight.headers["access-control-allow-headers"].split(", "))
    posted = requests.post(f"{fresh_emu.base_url}/client/events", params={"company_id": fresh_emu.public_key},
                           json=single_event(), headers=headers(key=None), timeout=30)
    assert posted.status_code == 202 and posted.headers["access-control-allow-origin"] == "*"
    refused = requests.post(f"{fresh_emu.base_url}/client/events", params={"company_id": "WRONG"},
                            json=single_event(), headers=headers(key=None), timeout=30)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"

    private = requests.options(f"{fresh_emu.base_url}/api/events", headers=PREFLIGHT, timeout=30)
    assert private.status_code == 405 and "access-control-allow-origin" not in private.headers
    read = requests.get(f"{fresh_emu.base_url}/api/events", headers={**headers(), "Origin": "http://shop.example"},
                        timeout=30)
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_client_profiles_take_the_public_key_and_update_properties_but_not_identifiers(fresh_emu, fresh_api):
    url = f"{fresh_emu.base_url}/client/profiles"
    body = _client_profile(first_name="Web", properties={"Status": "Active"})
    assert_valid_request("create_client_profile", body)
    assert requests.post(url, json=body, headers=headers(key=None), timeout=30).status_code == 400  # no company_id
    assert requests.post(url, params={"company_id": "WRONG"}, json=body, headers=headers(key=None),
                         timeout=30).status_code == 401
    created = requests.post(url, params={"company_id": fresh_emu.public_key}, json=body, headers=headers(key=None),
                            timeout=30)
    assert created.status_code == 202 and created.content == b""
    (person,) = fresh_emu.profiles()
    assert (person["email"], person["first_name"], person["properties"]) == ("web@example.com", "Web", {"Status": "Active"})

    fresh_api.post("/api/profile-import", {"data": {"type": "profile", "id": person["id"], "attributes": {
        "external_id": "cust-1"}}})
    changed = {"data": {"type": "profile", "attributes": {
        "email": "web@example.com", "external_id": "cust-2", "properties": {"Status": "Stopped"}}}}
    assert requests.post(url, params={"company_id": fresh_emu.public_key}, json=changed, headers=headers(key=None),
                         timeout=30).status_code == 202
    (person,) = fresh_emu.profiles()
    assert person["external_id"] == "cust-1" and person["properties"] == {"Status": "Stopped"}

    nameless = requests.post(url, params={"company_id": fresh_emu.public_key}, json=_client_profile(None, first_name="X"),
                             headers=headers(key=None), timeout=30)
    assert nameless.status_code == 400

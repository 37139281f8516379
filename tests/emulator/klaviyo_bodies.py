"""Request bodies and a small HTTP helper for the emulator tests (plain JSON:API, per the spec)."""

from __future__ import annotations

from typing import Any

import requests

REVISION = "2026-07-15"
JSON_API = "application/vnd.api+json"


def headers(key: str | None = "pk_test", revision: str | None = REVISION) -> dict[str, str]:
    out = {"Content-Type": JSON_API, "Accept": JSON_API}
    if key is not None:
        out["Authorization"] = f"Klaviyo-API-Key {key}"
    if revision is not None:
        out["revision"] = revision
    return out


def event(
    metric: str = "Placed Order",
    time: str | None = "2024-05-15T12:35:32-04:00",
    unique_id: str | None = None,
    properties: dict[str, Any] | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "properties": properties if properties is not None else {"OrderId": "1"},
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        **attributes,
    }
    if time is not None:
        attrs["time"] = time
    if unique_id is not None:
        attrs["unique_id"] = unique_id
    return {"type": "event", "attributes": attrs}


def profile(email: str | None = "sarah@example.com", **attributes: Any) -> dict[str, Any]:
    attrs = dict(attributes)
    if email is not None:
        attrs["email"] = email
    return {"type": "profile", "attributes": attrs}


def bulk_entry(email: str | None, events: list[dict[str, Any]], **profile_attributes: Any) -> dict[str, Any]:
    return {
        "type": "event-bulk-create",
        "attributes": {"profile": {"data": profile(email, **profile_attributes)}, "events": {"data": events}},
    }


def bulk_events(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": entries}},
        }
    }


def single_event(email: str = "sarah@example.com", **event_kwargs: Any) -> dict[str, Any]:
    body = event(**event_kwargs)
    body["attributes"]["profile"] = {"data": profile(email)}
    return {"data": body}


def profile_import(email: str | None = "sarah@example.com", **attributes: Any) -> dict[str, Any]:
    return {"data": profile(email, **attributes)}


def bulk_profiles(profiles: list[dict[str, Any]], list_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}
    if list_ids:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in list_ids]}}
    return {"data": data}


def suppression(emails: list[str]) -> dict[str, Any]:
    return {
        "data": {
            "type": "profile-suppression-bulk-create-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": e}} for e in emails]}},
        }
    }


def new_list(name: str) -> dict[str, Any]:
    return {"data": {"type": "list", "attributes": {"name": name}}}


class Api:
    """requests against one emulator with the private key and revision set."""

    def __init__(self, base_url: str, key: str = "pk_test"):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(headers(key))

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, json=body, timeout=30, **kwargs)

    def get(self, path: str, params: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, params=params, timeout=30, **kwargs)

    def get_url(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=30)


def pointers(response: requests.Response) -> list[str]:
    return [e["source"].get("pointer") for e in response.json()["errors"]]

"""Lists: find-or-create a list by name, and add profiles to it by e-mail.

Klaviyo's add_profiles_to_list takes profile ids, not e-mails, so e-mails are first looked up
(``get_profiles`` with ``any(email,[...])``, 100 per page) and the ones Klaviyo does not know yet are
created with ``create_or_update_profile``, which answers with the new id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote as url_quote

from kl_sync.klaviyo.batches import Batch, ItemOutcome, pack_items, send_batches
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.errors import RejectedError, RetryableError
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.klaviyo.profiles import upsert_profile
from kl_sync.klaviyo.reads import iter_profiles_by_email, quote

GET_LISTS = ENDPOINT_LIMITS["get_lists"]
CREATE_LIST = ENDPOINT_LIMITS["create_list"]
ADD_TO_LIST = ENDPOINT_LIMITS["add_profiles_to_list"]

#: Pointer to the n-th profile id of an add_profiles_to_list body.
LIST_PROFILES_POINTER = "/data/"

#: POST attempts for create_list, which the client does not retry by itself (it is not idempotent).
CREATE_LIST_ATTEMPTS = 3


def build_list_body(name: str) -> dict[str, Any]:
    """Body of ``POST /api/lists`` (create_list)."""
    return {"data": {"type": "list", "attributes": {"name": name}}}


def build_list_profiles_bodies(
    profile_ids: Sequence[str], max_per_request: int = ADD_TO_LIST.max_items or 1000
) -> list[Batch]:
    """Bodies of ``POST /api/lists/{id}/relationships/profiles``: profile ids, ``max_per_request`` each."""
    resources = [{"type": "profile", "id": profile_id} for profile_id in profile_ids]
    return pack_items(
        resources, lambda data: {"data": data}, LIST_PROFILES_POINTER, max_items=max_per_request, max_bytes=None
    )


def find_list(client: KlaviyoClient, name: str) -> str | None:
    """The id of the list called ``name`` (the oldest, if several), or None."""
    params = {"filter": f"equals(name,{quote(name)})", "sort": "created"}
    for page in client.paginate(GET_LISTS.path, endpoint=GET_LISTS.operation_id, params=params):
        for resource in page.get("data") or []:
            if (resource.get("attributes") or {}).get("name") == name:
                return str(resource["id"])
    return None


def create_list(client: KlaviyoClient, name: str) -> str:
    """The id of the list called ``name``, created only if no such list exists (idempotent).

    Creating a list is the one write that is not idempotent in Klaviyo (same name twice: two lists),
    so the client must not blindly re-POST after a timeout; this function looks the list up instead,
    and only POSTs again when the list really is not there.
    """
    existing = find_list(client, name)
    if existing is not None:
        return existing
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.post(
                CREATE_LIST.path, build_list_body(name), endpoint=CREATE_LIST.operation_id, idempotent=False
            )
        except RetryableError:
            # The POST may or may not have created the list: look before trying again.
            found = find_list(client, name)
            if found is not None:
                return found
            if attempt >= CREATE_LIST_ATTEMPTS:
                raise
            continue
        return str(response.json["data"]["id"])


def add_profiles_to_list(client: KlaviyoClient, list_id: str, emails: Sequence[str]) -> list[ItemOutcome]:
    """Add profiles (by e-mail) to a list; one outcome per e-mail, in order. Creates unknown profiles.

    Adding a profile that is already a member changes nothing, so this is safe to repeat.
    """
    unique = list(dict.fromkeys(email.casefold() for email in emails))
    first_spelling: dict[str, str] = {}
    for email in emails:
        first_spelling.setdefault(email.casefold(), email)
    ids: dict[str, str] = {}
    for profile in iter_profiles_by_email(client, [first_spelling[key] for key in unique]):
        if profile["email"]:
            ids.setdefault(profile["email"].casefold(), profile["id"])

    by_email: dict[str, ItemOutcome] = {}
    for key in unique:
        if key in ids:
            continue
        try:
            ids[key] = upsert_profile(client, {"email": first_spelling[key]})
        except RejectedError as err:
            by_email[key] = ItemOutcome("rejected", err.message)
        except RetryableError as err:
            by_email[key] = ItemOutcome("retry", err.message)

    members = [key for key in unique if key in ids]
    outcomes = send_batches(
        client,
        [ids[key] for key in members],
        build_list_profiles_bodies,
        ADD_TO_LIST,
        path=ADD_TO_LIST.path.replace("{id}", url_quote(list_id, safe="")),
    )
    by_email.update(zip(members, outcomes, strict=True))
    return [by_email[email.casefold()] for email in emails]

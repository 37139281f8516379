"""Profiles: the profile resource every write carries (in an event, an upsert or a bulk import), and
``POST /api/profile-import`` / ``POST /api/profile-bulk-import-jobs``."""

from __future__ import annotations

import json
import re
from typing import Any

from kl_sync.constants import MAX_PROFILE_BYTES, MAX_PROFILES_PER_BULK
from kl_sync.emulator.errors import Problem, pointer
from kl_sync.emulator.rules.common import Read, as_dict, as_list, get, items_at, too_many, valid_email
from kl_sync.emulator.storage.schema import IDENTIFIER_KINDS, PROFILE_ATTRIBUTES
from kl_sync.emulator.storage.profiles import ProfileWrite

MAX_PROFILES_PER_IMPORT = MAX_PROFILES_PER_BULK

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def read_profile(resource: Any, path: tuple, problems: list[Problem]) -> ProfileWrite:
    """A profile resource object (``{"type": "profile", "id"?, "attributes", "meta"?}``).

    When the resource or its attributes are missing, the shape check has said so already; the
    identifier rule would only repeat it."""
    shaped = isinstance(resource, dict) and isinstance(resource.get("attributes"), dict)
    attributes = as_dict(get(resource, "attributes"))
    profile_id = get(resource, "id")
    identifiers: dict[str, str] = {}
    for kind in IDENTIFIER_KINDS:
        value = attributes.get(kind)
        if isinstance(value, str) and value.strip():
            identifiers[kind] = value.strip()
    email = identifiers.get("email")
    if email is not None and not valid_email(email):
        problems.append(
            Problem(400, "invalid", f"Invalid email address: {email!r}", pointer((*path, "attributes", "email")))
        )
    phone = identifiers.get("phone_number")
    if phone is not None and not _E164.match(phone):
        problems.append(
            Problem(
                400,
                "invalid",
                f"Invalid phone number {phone!r}: use E.164, e.g. '+15005550006'",
                pointer((*path, "attributes", "phone_number")),
            )
        )
    if shaped and not identifiers and not (isinstance(profile_id, str) and profile_id):
        problems.append(
            Problem(
                400,
                "invalid",
                "A profile needs at least one identifier: id, email, phone_number, external_id, "
                "anonymous_id or _kx.",
                pointer(path),
            )
        )
    properties = attributes.get("properties")
    # The spec puts ``meta`` beside ``attributes``, except for POST /api/events (inside them).
    patch = as_dict(get(resource, "meta", "patch_properties") or get(attributes, "meta", "patch_properties"))
    return ProfileWrite(
        path=path,
        id=profile_id if isinstance(profile_id, str) and profile_id else None,
        identifiers=identifiers,
        attributes={k: attributes[k] for k in PROFILE_ATTRIBUTES if k in attributes},
        properties=dict(properties) if isinstance(properties, dict) else None,
        patch_append=as_dict(patch.get("append")),
        patch_unappend=as_dict(patch.get("unappend")),
        patch_unset=_unset_keys(patch.get("unset")),
    )


def _unset_keys(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def read_profile_upsert(body: Any) -> Read:
    """``POST /api/profile-import``."""
    problems: list[Problem] = []
    profile = read_profile(get(body, "data"), ("data",), problems)
    return Read([], [profile], problems)


def read_profile_import(body: Any) -> tuple[Read, list[str]]:
    """``POST /api/profile-bulk-import-jobs``: profiles, and the ids of lists to add them to."""
    base = ("data", "attributes", "profiles", "data")
    resources, problems = items_at(
        body, base, MAX_PROFILES_PER_IMPORT, "{count:,} profiles in one job; at most {limit:,} are accepted."
    )
    profiles = []
    for index, resource in enumerate(resources):
        size = len(json.dumps(resource, separators=(",", ":")).encode("utf-8"))
        problems += too_many(
            size, MAX_PROFILE_BYTES, "Profile is {count:,} bytes; at most {limit:,} per profile.", (*base, index)
        )
        profiles.append(read_profile(resource, (*base, index), problems))
    list_ids = [
        item["id"]
        for item in as_list(get(body, "data", "relationships", "lists", "data"))
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]
    return Read([], profiles, problems), list_ids

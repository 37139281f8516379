"""Profiles: :class:`~kl_sync.payloads.ProfilePayload` -> Klaviyo profile import bodies, and their senders.

Bulk (``bulk_import_profiles``, ``POST /api/profile-bulk-import-jobs``): up to 10,000 profiles and 5 MB
per job. Single (``create_or_update_profile``, ``POST /api/profile-import``): one profile, returns its
Klaviyo id, which :mod:`kl_sync.klaviyo.lists` needs.

A key present with ``None`` is sent as ``null``, which Klaviyo documents as clearing the field (the
store is the truth); a key left out leaves Klaviyo's value unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kl_sync.klaviyo.batches import Batch, ItemOutcome, pack_items, send_batches
from kl_sync.klaviyo.client import KlaviyoClient, copy_json
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.payloads import ProfilePayload

BULK_IMPORT = ENDPOINT_LIMITS["bulk_import_profiles"]
SINGLE_IMPORT = ENDPOINT_LIMITS["create_or_update_profile"]

#: Where a bulk import body's n-th profile is: ``/data/attributes/profiles/data/<n>``.
PROFILES_POINTER = "/data/attributes/profiles/data/"

_OPTIONAL = ("first_name", "last_name", "properties")


def build_profile_attributes(profile: ProfilePayload) -> dict[str, Any]:
    """Klaviyo profile attributes: email, and first/last name and custom properties when given."""
    attributes: dict[str, Any] = {"email": profile["email"]}
    for name in _OPTIONAL:
        if name in profile:
            attributes[name] = copy_json(profile[name])  # type: ignore[literal-required]
    return attributes


def build_profile_resource(profile: ProfilePayload) -> dict[str, Any]:
    """A JSON:API ``profile`` resource object identified by e-mail (no Klaviyo id)."""
    return {"type": "profile", "attributes": build_profile_attributes(profile)}


def build_profile_import_body(profile: ProfilePayload) -> dict[str, Any]:
    """Body of ``POST /api/profile-import`` (create_or_update_profile) for one profile."""
    return {"data": build_profile_resource(profile)}


def _bulk_import_envelope(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": resources}},
        }
    }


def build_profile_bulk_import_bodies(
    profiles: Sequence[ProfilePayload],
    max_profiles: int = BULK_IMPORT.max_items or 10_000,
    max_bytes: int = BULK_IMPORT.max_bytes or 5_000_000,
) -> list[Batch]:
    """Bodies of ``POST /api/profile-bulk-import-jobs``, in input order, each within both limits."""
    resources = [build_profile_resource(profile) for profile in profiles]
    return pack_items(resources, _bulk_import_envelope, PROFILES_POINTER, max_items=max_profiles, max_bytes=max_bytes)


def send_profiles(
    client: KlaviyoClient, profiles: Sequence[ProfilePayload], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Import profiles in bulk jobs; one outcome per profile, in order.

    ``sent`` means Klaviyo accepted the job (202); the import itself runs asynchronously on Klaviyo's side.
    ``batches``: ``build_profile_bulk_import_bodies(profiles)``, when the caller built them ahead.
    """
    return send_batches(client, profiles, build_profile_bulk_import_bodies, BULK_IMPORT, batches=batches)


def send_profile(client: KlaviyoClient, profile: ProfilePayload) -> ItemOutcome:
    """One profile, through the bulk path (one code path for outcomes)."""
    return send_profiles(client, [profile])[0]


def upsert_profile(client: KlaviyoClient, profile: ProfilePayload) -> str:
    """Create or update one profile now and return its Klaviyo id (``POST /api/profile-import``)."""
    response = client.post(SINGLE_IMPORT.path, build_profile_import_body(profile), endpoint=SINGLE_IMPORT.operation_id)
    return str(response.json["data"]["id"])

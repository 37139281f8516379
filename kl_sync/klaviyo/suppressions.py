"""Suppressions: e-mails -> ``POST /api/profile-suppression-bulk-create-jobs`` bodies (100 per request).

Suppressing an already suppressed e-mail changes nothing, so re-sending is always safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kl_sync.klaviyo.batches import Batch, ItemOutcome, pack_items, send_batches
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.klaviyo.profiles import PROFILES_POINTER

BULK_SUPPRESS = ENDPOINT_LIMITS["bulk_suppress_profiles"]


def _suppression_envelope(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {
            "type": "profile-suppression-bulk-create-job",
            "attributes": {"profiles": {"data": resources}},
        }
    }


def build_suppression_bodies(emails: Sequence[str], max_per_request: int = BULK_SUPPRESS.max_items or 100) -> list[Batch]:
    """Bulk-suppress bodies, ``max_per_request`` e-mails each, in input order."""
    resources = [{"type": "profile", "attributes": {"email": email}} for email in emails]
    return pack_items(resources, _suppression_envelope, PROFILES_POINTER, max_items=max_per_request, max_bytes=None)


def send_suppressions(
    client: KlaviyoClient, emails: Sequence[str], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Suppress e-mails; one outcome per e-mail, in input order (``batches``: built ahead, if given)."""
    return send_batches(client, emails, build_suppression_bodies, BULK_SUPPRESS, batches=batches)


def send_suppression(client: KlaviyoClient, email: str) -> ItemOutcome:
    return send_suppressions(client, [email])[0]

"""Suppressions and unsuppressions: e-mails -> ``POST /api/profile-suppression-bulk-create-jobs`` and
``POST /api/profile-suppression-bulk-delete-jobs`` bodies (100 e-mails per request each).

Suppressing an already suppressed e-mail changes nothing, so re-sending is always safe. Unsuppressing
"only removes suppressions with reason USER_SUPPRESSED; unsubscribed profiles and suppressed profiles
with reason INVALID_EMAIL or HARD_BOUNCE remain unchanged" (bulk_unsuppress_profiles): a person who
unsubscribed from a Klaviyo e-mail stays unsubscribed whatever the store says, and re-sending is safe too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kl_sync.klaviyo.batches import Batch, ItemOutcome, pack_items, send_batches
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.klaviyo.profiles import PROFILES_POINTER

BULK_SUPPRESS = ENDPOINT_LIMITS["bulk_suppress_profiles"]
BULK_UNSUPPRESS = ENDPOINT_LIMITS["bulk_unsuppress_profiles"]


def _envelope(job_type: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def envelope(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data": {"type": job_type, "attributes": {"profiles": {"data": resources}}}}

    return envelope


def _bodies(emails: Sequence[str], job_type: str, max_per_request: int) -> list[Batch]:
    resources = [{"type": "profile", "attributes": {"email": email}} for email in emails]
    return pack_items(resources, _envelope(job_type), PROFILES_POINTER, max_items=max_per_request, max_bytes=None)


def build_suppression_bodies(emails: Sequence[str], max_per_request: int = BULK_SUPPRESS.max_items or 100) -> list[Batch]:
    """Bulk-suppress bodies, ``max_per_request`` e-mails each, in input order."""
    return _bodies(emails, "profile-suppression-bulk-create-job", max_per_request)


def build_unsuppression_bodies(
    emails: Sequence[str], max_per_request: int = BULK_UNSUPPRESS.max_items or 100
) -> list[Batch]:
    """Bulk-unsuppress bodies, ``max_per_request`` e-mails each, in input order."""
    return _bodies(emails, "profile-suppression-bulk-delete-job", max_per_request)


def send_suppressions(
    client: KlaviyoClient, emails: Sequence[str], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Suppress e-mails; one outcome per e-mail, in input order (``batches``: built ahead, if given)."""
    return send_batches(client, emails, build_suppression_bodies, BULK_SUPPRESS, batches=batches)


def send_unsuppressions(
    client: KlaviyoClient, emails: Sequence[str], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Lift kl-sync's (USER_SUPPRESSED) suppression of e-mails; one outcome per e-mail, in input order."""
    return send_batches(client, emails, build_unsuppression_bodies, BULK_UNSUPPRESS, batches=batches)


def send_suppression(client: KlaviyoClient, email: str) -> ItemOutcome:
    return send_suppressions(client, [email])[0]

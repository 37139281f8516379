"""The other direction, read only: whom Klaviyo cannot e-mail, and why.

Klaviyo learns things the store does not: a person who unsubscribed from a Klaviyo e-mail
(``UNSUBSCRIBE``), a hard bounce, a spam complaint, an invalid address. They show in a profile's
``subscriptions.email.marketing.suppression`` (``additional-fields[profile]=subscriptions``).
:func:`iter_suppressed_profiles` reads the profiles suppressed after a cursor, ``GET /api/profiles``
filtered and sorted on ``subscriptions.email.marketing.suppression.timestamp`` (both allowed by the
spec's get_profiles), 100 a page, within that endpoint's 75/s and 750/min.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.reads import GET_PROFILES, filter_datetime

SUPPRESSION_TIME = "subscriptions.email.marketing.suppression.timestamp"
#: Before any suppression: the cursor of a first read.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class KlaviyoConsent:
    """One profile Klaviyo suppresses: its e-mail (lower-cased), ids, and the latest suppression."""

    email: str
    profile_id: str
    external_id: str | None
    reason: str
    suppressed_at: dt.datetime
    can_receive: bool


def iter_suppressed_profiles(client: KlaviyoClient, since: dt.datetime | None = None) -> Iterator[KlaviyoConsent]:
    """Profiles with an e-mail whose suppression is at or after ``since`` (aware; all when None), in
    suppression order: the last one's ``suppressed_at`` is the next cursor."""
    params = {
        # greater-or-equal: a suppression in the same second as the cursor is not skipped (Klaviyo's
        # timestamps may be to the second); re-reading the cursor's own ones is harmless.
        "filter": f"greater-or-equal({SUPPRESSION_TIME},{filter_datetime(since or EPOCH)})",
        "sort": SUPPRESSION_TIME,
        "additional-fields[profile]": "subscriptions",
        "fields[profile]": "email,external_id,subscriptions",
        "page[size]": GET_PROFILES.max_items or 100,
    }
    for page in client.paginate(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id, params=params):
        for resource in page.get("data") or []:
            found = _consent_of(resource)
            if found is not None:
                yield found


def _consent_of(resource: dict) -> KlaviyoConsent | None:
    attributes = resource.get("attributes") or {}
    marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get("marketing") or {}
    suppressions = [s for s in marketing.get("suppression") or [] if isinstance(s, dict) and s.get("timestamp")]
    email = attributes.get("email")
    if not suppressions or not isinstance(email, str):
        return None
    latest = max(suppressions, key=lambda s: str(s["timestamp"]))
    when = dt.datetime.fromisoformat(str(latest["timestamp"]).replace("Z", "+00:00"))
    return KlaviyoConsent(email.strip().lower(), str(resource.get("id")), attributes.get("external_id"),
                          str(latest.get("reason")), when if when.tzinfo else when.replace(tzinfo=dt.UTC),
                          bool(marketing.get("can_receive_email_marketing")))

"""The shapes kl-sync queues in its outbox, one per Klaviyo operation.

Every pipeline step writes these as the JSON ``payload`` of an outbox row; the sender turns them
into Klaviyo JSON:API bodies (``kl_sync.klaviyo.events`` / ``profiles`` / ``suppressions``) and the
quality suites in ``expectations/`` validate them. They are deliberately close to Klaviyo's own
attribute names so a payload reads the same in the state DB, a dead letter and the request body.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

#: Outbox kinds. Each has one GX suite (``expectations/<kind>.json``) and one Klaviyo endpoint.
EVENT_KINDS = ("log_event", "order_event", "ordered_product")
OutboxKind = Literal["log_event", "order_event", "ordered_product", "profile", "suppression"]
OUTBOX_KINDS: tuple[str, ...] = (*EVENT_KINDS, "profile", "suppression")


class ProfilePayload(TypedDict):
    """A profile as Klaviyo identifies it: by e-mail, with the store's current custom properties."""

    email: str
    first_name: NotRequired[str | None]
    last_name: NotRequired[str | None]
    #: Custom properties: Schedule, Status, Box, SignUpDate, HasFilledOutProfile.
    properties: NotRequired[dict[str, Any]]


class EventPayload(TypedDict):
    """One Klaviyo event for one profile (kinds ``log_event``, ``order_event``, ``ordered_product``)."""

    metric: str
    #: ISO 8601 with the store's UTC offset, e.g. ``2024-05-15T12:35:32-04:00``.
    time: str
    #: The outbox key; Klaviyo dedupes on (profile, metric, unique_id).
    unique_id: str
    properties: dict[str, Any]
    profile: ProfilePayload
    value: NotRequired[float]
    value_currency: NotRequired[str]
    #: True for history: Klaviyo records the event without firing flows.
    backfill: NotRequired[bool]


class SuppressionPayload(TypedDict):
    email: str

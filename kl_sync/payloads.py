"""The shapes kl-sync queues in its outbox, one per Klaviyo operation, and how to read a stored one.

Every pipeline step writes these as the JSON ``payload`` of an outbox row; the sender turns them
into Klaviyo JSON:API bodies (``kl_sync.klaviyo.events`` / ``profiles`` / ``suppressions``) and the
quality suites validate them. They are deliberately close to Klaviyo's own attribute names so a
payload reads the same in the state DB, a dead letter and the request body. Which kind carries which
shape is declared in :mod:`kl_sync.kinds`.

A payload read back from the outbox may not have its shape (a bug, a hand edit, a store value that
is not what it claims): :func:`object_field` and :func:`json_type` read one defensively, for the
flatteners the suites check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

#: Klaviyo's e-commerce metrics, recognised by its analytics (CLV, benchmarks) only when spelled so.
PLACED_ORDER, ORDERED_PRODUCT = "Placed Order", "Ordered Product"
CANCELLED_ORDER, FULFILLED_ORDER = "Cancelled Order", "Fulfilled Order"


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


class UnflattenablePayload(ValueError):
    """The payload's shape is too broken to check field by field; the message says why."""


def object_field(container: Mapping[str, Any], name: str, where: str = "") -> Mapping[str, Any]:
    """``container[name]`` as a mapping; absent or null counts as empty, anything else is unflattenable."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnflattenablePayload(f"{where}{name} is a {type(value).__name__}, not an object")
    return value


def json_type(value: Any) -> str | None:
    """The JSON type of a value as the ``*_type`` columns hold it: null for absent or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"

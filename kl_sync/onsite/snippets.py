"""The store's browser-side Klaviyo calls, defined once as data.

Each snippet is a tuple of :class:`OnsiteCall` (``klaviyo.identify(...)`` or ``klaviyo.track(...)``).
The same tuple is rendered into the page's JavaScript (:mod:`kl_sync.onsite.render`) and turned into
the requests the page's ``klaviyo.js`` sends (:func:`browser_requests`), which the demo posts for its
simulated browsers, so what a page sends and what the simulation sends can never drift apart. The
emulator's ``klaviyo.js`` (``kl_sync/emulator/static/klaviyo.js``) turns calls into requests by the
same rules; ``tests/onsite/test_in_chromium.py`` checks in a real browser that the two agree.

The properties follow the store's seed description of its front side (``Started Checkout``,
``Completed Signup``, ``Cancelled Account``) moved from the retired ``_learnq`` queue to the
``klaviyo`` object, whose ``identify`` takes ``email`` / ``first_name`` / ``last_name``. One change:
dates carry their UTC offset (see :func:`klaviyo_date`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

BOX_CATEGORY = "Boxes"

STARTED_CHECKOUT = "Started Checkout"
COMPLETED_SIGNUP = "Completed Signup"
CANCELLED_ACCOUNT = "Cancelled Account"

#: identify() keys that are the profile's own attributes; every other key is a custom property.
#: (klaviyo.identify also takes phone_number, title and organization, which no snippet here sends.)
PROFILE_ATTRIBUTES = ("email", "first_name", "last_name")
#: track() properties the page's script sends as the event's own attributes, not as properties.
EVENT_ATTRIBUTES = {"$event_id": "unique_id", "$value": "value"}

#: What a page passes as ``event_id`` so Klaviyo keeps one event of a browser / server twin pair:
#: the server's unique_id for the log row the page's form wrote (the duplicate notebook's fix). It
#: takes the same metric name on both sides too (``KL_SYNC_LOG_METRICS``: ``started.signup`` ->
#: ``Started Checkout``), and klaviyo.js sending ``$event_id`` as the event's unique_id, which the
#: emulator's script does and Klaviyo does not document.
SAME_EVENT_ID = "log:{log_id}"

CREATE_CLIENT_PROFILE = "create_client_profile"
CREATE_CLIENT_EVENT = "create_client_event"


def _frozen(properties: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(properties))


@dataclass(frozen=True)
class OnsiteCall:
    """One call on the page's ``klaviyo`` object."""

    method: Literal["identify", "track"]
    properties: Mapping[str, Any] = field(default_factory=dict)
    #: The metric name, for ``track`` only.
    metric: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("identify", "track"):
            raise ValueError(f"unknown klaviyo method {self.method!r}")
        if (self.method == "track") != (self.metric is not None):
            raise ValueError("track calls need a metric name and identify calls take none")
        object.__setattr__(self, "properties", _frozen(self.properties))

    def arguments(self) -> list[Any]:
        """The call's JavaScript arguments, in order."""
        properties = dict(self.properties)
        return [self.metric, properties] if self.method == "track" else [properties]


Snippet = tuple[OnsiteCall, ...]


@dataclass(frozen=True)
class BoxProduct:
    """A box as the sign-up page offers it."""

    product_id: str
    name: str
    price: Decimal
    product_url: str
    image_url: str = ""


def klaviyo_date(at: dt.datetime) -> str:
    """A date property: ISO 8601 with the UTC offset, as the server side writes SignUpDate.

    The seed printed naive store-local times (``'2020-05-15 12:35:32'``), which Klaviyo reads as UTC;
    with the offset the browser and the server write the same value for the same moment.
    """
    if at.tzinfo is None:
        raise ValueError("date properties need an aware time (the store's zone), else Klaviyo reads them as UTC")
    return at.isoformat(timespec="seconds")


def build_identify(email: str, first_name: str | None = None, last_name: str | None = None) -> Snippet:
    """Identify a known customer (logged in, or past a form that gave us the e-mail)."""
    properties: dict[str, Any] = {"email": email}
    if first_name:
        properties["first_name"] = first_name
    if last_name:
        properties["last_name"] = last_name
    return (OnsiteCall("identify", properties),)


def build_started_checkout(
    customer_id: int, box: BoxProduct | None, *, at: dt.datetime, site_url: str, event_id: str | None = None
) -> Snippet:
    """After sign-up step 1. ``at`` must be aware: ``$event_id`` is ``<customer id>_<unix time>`` as in
    the seed, unless ``event_id`` names the event otherwise (see :data:`SAME_EVENT_ID`)."""
    if at.tzinfo is None:
        raise ValueError("Started Checkout needs an aware time: its $event_id carries the unix time")
    boxes = [box] if box is not None else []
    value = sum((b.price for b in boxes), Decimal(0))
    properties = {
        "$event_id": event_id or f"{customer_id}_{int(at.timestamp())}",
        "$value": float(value),
        "ItemNames": [b.name for b in boxes],
        "CheckoutURL": f"{site_url.rstrip('/')}/sign-up",
        "Categories": [BOX_CATEGORY] if boxes else [],
        "Items": [
            {
                "ProductID": b.product_id,
                "ProductName": b.name,
                "Quantity": 1,
                "ItemPrice": float(b.price),
                "RowTotal": float(b.price),
                "ProductURL": b.product_url,
                "ImageURL": b.image_url,
                "ProductCategories": [BOX_CATEGORY],
            }
            for b in boxes
        ],
    }
    return (OnsiteCall("track", properties, STARTED_CHECKOUT),)


def build_completed_signup(schedule: str, signup_date: dt.datetime, has_filled_out_profile: bool) -> Snippet:
    """On the 'first-time' page after the last sign-up step. ``signup_date`` must be aware."""
    profile = {
        "Schedule": schedule,
        "SignUpDate": klaviyo_date(signup_date),
        "Status": "Active",
        "HasFilledOutProfile": bool(has_filled_out_profile),
    }
    return (OnsiteCall("identify", profile), OnsiteCall("track", {COMPLETED_SIGNUP: True}, COMPLETED_SIGNUP))


def build_cancelled_account(cancelled_at: dt.datetime, event_id: str | None = None) -> Snippet:
    """After the customer confirmed the cancellation. ``cancelled_at`` must be aware. The seed sends
    no ``$event_id``; ``event_id`` adds one (see :data:`SAME_EVENT_ID`)."""
    properties: dict[str, Any] = {"$event_id": event_id} if event_id else {}
    properties["Cancellation Date"] = klaviyo_date(cancelled_at)
    return (
        OnsiteCall("identify", {"Status": "Stopped"}),
        OnsiteCall("track", properties, CANCELLED_ACCOUNT),
    )


class BrowserRequest(NamedTuple):
    """One request a page's ``klaviyo.js`` sends: ``POST /client/profiles`` for an identify (once an
    e-mail is known), ``POST /client/events`` for a track."""

    operation_id: Literal["create_client_profile", "create_client_event"]
    payload: dict[str, Any]  # a ProfilePayload or an EventPayload (kl_sync.payloads)


def browser_requests(snippet: Iterable[OnsiteCall], *, at: dt.datetime) -> list[BrowserRequest]:
    """What a browser running ``snippet`` at ``at`` sends, as the page's script does, in the order
    the calls make the requests (the script sends each at once, so they may arrive in any order).

    Identify calls accumulate into the profile: each identify sends it whole, and each later track
    is attributed to it. ``$event_id`` becomes the event's ``unique_id`` and ``$value`` its
    ``value``; a track without ``$event_id`` gets none (Klaviyo then keeps one such event per
    profile, metric and second). Payloads are shaped like the outbox's (see :mod:`kl_sync.payloads`).
    """
    if at.tzinfo is None:
        raise ValueError("client events need an aware time")
    attributes: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    sent: list[BrowserRequest] = []

    def profile() -> dict[str, Any]:
        known: dict[str, Any] = dict(attributes)
        if custom:
            known["properties"] = dict(custom)
        return known

    for call in snippet:
        if call.method == "identify":
            for key, value in call.properties.items():
                (attributes if key in PROFILE_ATTRIBUTES else custom)[key] = value
            if attributes.get("email"):
                sent.append(BrowserRequest(CREATE_CLIENT_PROFILE, profile()))
            continue
        if not attributes.get("email"):
            raise ValueError(f"{call.metric!r} is tracked before anyone is identified by e-mail")
        event: dict[str, Any] = {"metric": call.metric, "time": at.isoformat(timespec="seconds"), "properties": {}}
        for key, value in call.properties.items():
            if key in EVENT_ATTRIBUTES:
                if value is not None:
                    event[EVENT_ATTRIBUTES[key]] = str(value) if key == "$event_id" else value
            else:
                event["properties"][key] = value
        event["profile"] = profile()
        sent.append(BrowserRequest(CREATE_CLIENT_EVENT, event))
    return sent


def build_client_events(snippet: Iterable[OnsiteCall], *, at: dt.datetime) -> list[dict[str, Any]]:
    """The events among :func:`browser_requests` (what the duplicate analysis studies)."""
    return [r.payload for r in browser_requests(snippet, at=at) if r.operation_id == CREATE_CLIENT_EVENT]

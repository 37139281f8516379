"""Outbox kinds as data: what each kind of outbox row IS, declared once.

A :class:`Kind` names its payload shape (:mod:`kl_sync.payloads`), its Great Expectations suite
(``kl_sync/expectations/<kind>.json``), the columns that suite sees (its flattener), the metrics it may
carry (a function of the settings), the :class:`Operation` that sends it, and the :class:`Verifier`
that proves a sent row in Klaviyo (reads it back; :mod:`kl_sync.klaviyo.delivery`). An operation is one
Klaviyo bulk endpoint: its limits (items per request, rate windows) come from the one table of
Klaviyo limits, :data:`~kl_sync.klaviyo.limits.ENDPOINT_LIMITS`; its body builder and sender from the
endpoint's resource module in :mod:`kl_sync.klaviyo`. Kinds that name the same operation share its
requests: the three event kinds go out together through bulk event creation.

The sender, the verify step, the quality gate, the pipeline and the dry-run preview read this
registry; none of them knows a kind by name. A new kind is a :class:`Kind` here (and an :class:`Operation` when it needs a new
endpoint), its suite file, and its builder and sender in ``klaviyo/``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kl_sync.klaviyo import delivery, events, profiles, suppressions
from kl_sync.klaviyo.batches import Batch, ItemOutcome
from kl_sync.klaviyo.client import body_text
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, EndpointLimits
from kl_sync.payloads import (
    CANCELLED_ORDER,
    FULFILLED_ORDER,
    ORDERED_PRODUCT,
    PLACED_ORDER,
    EventPayload,
    ProfilePayload,
    SuppressionPayload,
    UnflattenablePayload,
    json_type,
    object_field,
)

if TYPE_CHECKING:
    from kl_sync.settings import Settings
    from kl_sync.state.delivery import DueRow, Spread
    from kl_sync.state.outbox import ClaimedItem

#: Where the suites live: ``<kind>.json`` each, shipped inside the package.
SUITES_DIR = Path(__file__).resolve().parent / "expectations"


# ----------------------------------------------------------------------------- operations


def _payload(payload: dict[str, Any]) -> Any:
    return payload


def _email(payload: dict[str, Any]) -> Any:
    return payload["email"]


def _by_profile(item: ClaimedItem) -> tuple[str, int]:
    """Sorting by profile packs each profile's events into one bulk-create entry. A payload of
    another shape (a profile that is not an object, an e-mail that is not text) sorts as no e-mail:
    its suite fails it, or its body cannot be built, and the rest of its batch is still ordered."""
    profile = item.payload.get("profile") if isinstance(item.payload, dict) else None
    email = profile.get("email") if isinstance(profile, dict) else None
    return (email if isinstance(email, str) else "", item.id)


@dataclass(frozen=True, eq=False)
class Operation:
    """One Klaviyo bulk endpoint the sender calls, and how outbox rows become its requests."""

    #: The run summary counts the rows it delivered as ``sent_<name>``.
    name: str
    endpoint: EndpointLimits
    #: What the builder and the sender take from one payload (the payload itself, or its e-mail).
    input_of: Callable[[dict[str, Any]], Any]
    #: Inputs -> request bodies, each within the endpoint's limits (pure).
    build: Callable[[Sequence[Any]], list[Batch]]
    #: (client, inputs, batches=the built bodies) -> one outcome per input.
    send: Callable[..., list[ItemOutcome]]
    #: One payload -> the body a dry run shows.
    preview: Callable[[dict[str, Any]], dict[str, Any]]
    #: Sort key of a batch's rows before they are cut into requests; None keeps queue order.
    order: Callable[[ClaimedItem], Any] | None = None
    #: Whether its requests may be in flight together (``KL_SYNC_SEND_IN_FLIGHT`` of them): only when
    #: the order they reach Klaviyo in cannot matter. Events carry their own time and unique_id, and
    #: suppressing is set-like; two profile imports of one profile must arrive in order (last wins).
    concurrent: bool = False

    @property
    def items_per_request(self) -> int:
        return self.endpoint.max_items or 1


EVENTS = Operation(
    "events", ENDPOINT_LIMITS["bulk_create_events"], _payload,
    events.build_event_bulk_bodies, events.send_events, events.build_event_body, order=_by_profile,
    concurrent=True,
)
PROFILES = Operation(
    "profiles", ENDPOINT_LIMITS["bulk_import_profiles"], _payload,
    profiles.build_profile_bulk_import_bodies, profiles.send_profiles, profiles.build_profile_import_body,
)
SUPPRESSIONS = Operation(
    "suppressions", ENDPOINT_LIMITS["bulk_suppress_profiles"], _email,
    suppressions.build_suppression_bodies, suppressions.send_suppressions,
    lambda payload: suppressions.build_suppression_bodies([payload["email"]])[0].body, concurrent=True,
)
UNSUPPRESSIONS = Operation(
    "unsuppressions", ENDPOINT_LIMITS["bulk_unsuppress_profiles"], _email,
    suppressions.build_unsuppression_bodies, suppressions.send_unsuppressions,
    lambda payload: suppressions.build_unsuppression_bodies([payload["email"]])[0].body,
)
OPERATIONS: tuple[Operation, ...] = (EVENTS, PROFILES, SUPPRESSIONS, UNSUPPRESSIONS)


# ----------------------------------------------------------------------------- verifiers


@dataclass
class VerifyContext:
    """What the verify step hands a verifier besides the due rows: one per verifier and verification."""

    #: Per metric of the chunk of due rows, how many rows of it kl-sync queued over what span of event
    #: times (how dense it is in Klaviyo, for reading windows).
    spreads: Mapping[str, Spread]
    #: Outbox ids -> their payloads, loaded when asked (a verifier that needs more than the columns).
    payloads: Callable[[Sequence[int]], Mapping[int, dict[str, Any]]]
    #: Kept by a verifier between the chunks of due rows of one verification (Klaviyo's metric ids).
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Verifier:
    """How rows of some kinds are read back from Klaviyo once sent: ``find(client, rows, context)``
    returns the keys of ``rows`` Klaviyo holds. Kinds that share a verifier are verified together."""

    name: str
    #: The read endpoint it uses (its row of ENDPOINT_LIMITS: its own rate windows).
    endpoint: EndpointLimits
    find: Callable[[Any, Sequence[DueRow], VerifyContext], set[str]]


def _find_events(client: Any, rows: Sequence[DueRow], context: VerifyContext) -> set[str]:
    wanted = [delivery.WantedEvent(row.key, row.metric, row.event_time.replace(tzinfo=dt.UTC))
              for row in rows if row.metric and row.event_time]
    split = {metric: delivery.split_after(spread.rows, spread.first, spread.last)
             for metric, spread in context.spreads.items()}
    id_of = {row.key: row.id for row in rows}
    if "metric_ids" not in context.memo:
        context.memo["metric_ids"] = delivery.metric_ids_by_name(client)

    def emails(keys: Sequence[str]) -> dict[str, str]:
        payloads = context.payloads([id_of[key] for key in keys])
        return {key: (payloads.get(id_of[key], {}).get("profile") or {}).get("email") or "" for key in keys}

    return delivery.find_events(client, wanted, split_after=split, emails=emails, metric_ids=context.memo["metric_ids"])


def _finder(holds: Callable[[Any, Sequence[str]], set[str]]) -> Callable[[Any, Sequence[DueRow], VerifyContext], set[str]]:
    """A verifier's find over e-mail rows: the keys whose e-mail ``holds(client, e-mails)`` returns."""

    def find(client: Any, rows: Sequence[DueRow], context: VerifyContext) -> set[str]:
        payloads = context.payloads([row.id for row in rows])
        email_of = {row.key: str(payloads.get(row.id, {}).get("email") or "") for row in rows}
        found = holds(client, [email for email in email_of.values() if email])
        return {key for key, email in email_of.items() if email and email.strip().lower() in found}

    return find


#: Events are read back with ``GET /api/events``, metric by metric, window by window.
EVENTS_READ = Verifier("events", ENDPOINT_LIMITS["get_events"], _find_events)
#: Suppressions are read back from the profiles' ``subscriptions`` (``GET /api/profiles``).
SUPPRESSIONS_READ = Verifier("suppressions", ENDPOINT_LIMITS["get_profiles"], _finder(delivery.find_suppressed))
#: Unsuppressions too: proven when no USER_SUPPRESSED suppression is left (the only one they lift).
UNSUPPRESSIONS_READ = Verifier("unsuppressions", ENDPOINT_LIMITS["get_profiles"],
                               _finder(delivery.find_unsuppressed))


# ----------------------------------------------------------------------------- flatteners


def event_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What an event's suite checks: its profile's e-mail and Status, metric, time, ids, value, counts."""
    properties = object_field(payload, "properties")
    profile = object_field(payload, "profile")
    profile_properties = object_field(profile, "properties", "profile.")
    time = payload.get("time")
    value = payload.get("value")
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise UnflattenablePayload(f"value {value} is too large for a number") from None
    items = properties.get("Items")
    return {
        "email": profile.get("email"),
        "metric": payload.get("metric"),
        "time": time,
        "time_text": time if isinstance(time, str) else None,
        "unique_id": payload.get("unique_id"),
        "unique_id_type": json_type(payload.get("unique_id")),
        "backfill_type": json_type(payload.get("backfill")),
        "value": number,
        "value_type": json_type(value),
        "value_currency": payload.get("value_currency"),
        "property_count": len(properties),
        "status": profile_properties.get("Status"),
        "order_id": properties.get("OrderId"),
        "product_id": properties.get("ProductID"),
        "items_json": None if items is None else body_text(items),
    }


def profile_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a profile's suite checks: e-mail, Status, property count, and its size as sent."""
    properties = object_field(payload, "properties")
    return {
        "email": payload.get("email"),
        "status": properties.get("Status"),
        "property_count": len(properties),
        "payload_bytes": len(body_text(payload).encode("utf-8", "surrogatepass")),
    }


def email_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a suppression's (or unsuppression's) suite checks: its e-mail."""
    return {"email": payload.get("email")}


# ----------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Kind:
    """One kind of outbox row."""

    name: str
    #: The payload's shape (a TypedDict of :mod:`kl_sync.payloads`).
    payload: type
    operation: Operation
    #: The flattener: one payload -> the columns its suite checks (raises UnflattenablePayload).
    columns: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: The metric names its payloads may carry, from the settings; None for a kind with no metric.
    metrics: Callable[[Settings], frozenset[str]] | None = None
    #: How a sent row of it is proven in Klaviyo; None: its rows stay ``sent`` (never verified).
    verifier: Verifier | None = None
    #: The unit a row belongs to, from its key (sent or held together), or None for a row on its own.
    unit: Callable[[str], str | None] | None = None

    def unit_of(self, key: str) -> str | None:
        return None if self.unit is None else self.unit(key)

    @property
    def suite(self) -> Path:
        """Its Great Expectations suite."""
        return SUITES_DIR / f"{self.name}.json"


def _placed_order_unit(key: str) -> str | None:
    """An order's Placed Order (``order:<id>:placed``) and its Ordered Products (``order:<id>:item:<n>``)
    are one unit, ``order:<id>``; its later Cancelled / Fulfilled Order stands alone."""
    parts = key.split(":")
    if len(parts) >= 3 and parts[0] == "order" and parts[2] in ("placed", "item"):
        return f"order:{parts[1]}"
    return None


def unit_lead(unit: str) -> str:
    """The row the rest of a unit goes after: an order's Placed Order, ``order:<id>:placed``. A line
    is posted only once Klaviyo accepted its Placed Order, and held with it once it is dead, whichever
    batch, worker or retry each came in (kl_sync.steps.send)."""
    return f"{unit}:placed"


def _log_metrics(settings: Settings) -> frozenset[str]:
    return frozenset(settings.log_metrics.values())


def _fixed(*names: str) -> Callable[[Settings], frozenset[str]]:
    return lambda settings: frozenset(names)


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("log_event", EventPayload, EVENTS, event_columns, _log_metrics, EVENTS_READ),
        Kind("order_event", EventPayload, EVENTS, event_columns, _fixed(PLACED_ORDER, CANCELLED_ORDER, FULFILLED_ORDER),
             EVENTS_READ, unit=_placed_order_unit),
        Kind("ordered_product", EventPayload, EVENTS, event_columns, _fixed(ORDERED_PRODUCT), EVENTS_READ,
             unit=_placed_order_unit),
        # Profiles are proven by their import job instead (kl_sync.klaviyo.profiles: README, "Profiles").
        Kind("profile", ProfilePayload, PROFILES, profile_columns),
        Kind("suppression", SuppressionPayload, SUPPRESSIONS, email_columns, verifier=SUPPRESSIONS_READ),
        Kind("unsuppression", SuppressionPayload, UNSUPPRESSIONS, email_columns, verifier=UNSUPPRESSIONS_READ),
    )
}
OUTBOX_KINDS: tuple[str, ...] = tuple(KINDS)
#: The kinds sent as Klaviyo events (for code that must tell an event's payload from a profile's).
EVENT_KINDS: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if kind.operation is EVENTS)


def verifiers() -> dict[Verifier, list[str]]:
    """Each verifier and the kinds it proves, in registry order."""
    found: dict[Verifier, list[str]] = {}
    for name, kind in KINDS.items():
        if kind.verifier is not None:
            found.setdefault(kind.verifier, []).append(name)
    return found


def kind_of(name: str) -> Kind:
    """The registered kind called ``name``; ValueError naming the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown outbox kind {name!r} (known: {', '.join(OUTBOX_KINDS)})") from None


def metric_names(settings: Settings) -> dict[str, frozenset[str]]:
    """The metrics each kind that carries one may carry: the configured log metrics, Klaviyo's order
    metrics."""
    return {name: kind.metrics(settings) for name, kind in KINDS.items() if kind.metrics is not None}

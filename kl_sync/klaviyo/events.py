"""Events: :class:`~kl_sync.payloads.EventPayload` -> Klaviyo JSON:API bodies, and the sender.

Bulk (``bulk_create_events``, ``POST /api/event-bulk-create-jobs``): one entry per profile, carrying
that profile's events; at most 1,000 events and 5 MB per request. Every input row's place in a body is
kept (:class:`~kl_sync.klaviyo.batches.Batch`), so a 400 pointing at one event fails that row only.

Per the spec, ``backfill`` exists both on a bulk entry and on each event; it is set per event, because
one profile's entry may mix history (backfilled) with new events that should fire flows.

A batch never holds the same (profile, metric, unique_id) twice: the bulk spec says a repeated
unique_id fails the whole request (without a unique_id, Klaviyo uses the time instead). "The same
profile" is Klaviyo's: entries sharing an e-mail (or another identifier) are one profile even when
their names differ. A repeat goes into a later batch, where Klaviyo's dedupe keeps the first one, so
the row is still sent and reported, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kl_sync.klaviyo.batches import Batch, ItemOutcome, send_batches
from kl_sync.klaviyo.client import KlaviyoClient, copy_json, encode_body
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.klaviyo.profiles import build_profile_resource
from kl_sync.payloads import EventPayload

BULK_CREATE = ENDPOINT_LIMITS["bulk_create_events"]

#: Pointer to event ``j`` of profile entry ``i``: ``/data/attributes/events-bulk-create/data/<i>/attributes/events/data/<j>``.
EVENTS_POINTER = ("/data/attributes/events-bulk-create/data/", "/attributes/events/data/")

#: EventPayload keys copied to the Klaviyo event attributes as they are, when present.
_OPTIONAL = ("time", "value", "value_currency", "unique_id", "backfill")


def build_event_attributes(event: EventPayload) -> dict[str, Any]:
    """An event's Klaviyo attributes, without the profile: properties, metric by name, and the rest."""
    attributes: dict[str, Any] = {"properties": copy_json(event.get("properties") or {})}
    for name in _OPTIONAL:
        if name in event:
            attributes[name] = event[name]  # type: ignore[literal-required]
    attributes["metric"] = {"data": {"type": "metric", "attributes": {"name": event["metric"]}}}
    return attributes


def build_event_body(event: EventPayload) -> dict[str, Any]:
    """Body of ``POST /api/events`` (create_event) for one event, its profile identified by e-mail."""
    attributes = build_event_attributes(event)
    attributes["profile"] = {"data": build_profile_resource(event["profile"])}
    return {"data": {"type": "event", "attributes": attributes}}


def _bulk_envelope(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": entries}}}}


def _bulk_entry(profile: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "event-bulk-create", "attributes": {"profile": {"data": profile}, "events": {"data": events}}}


@dataclass
class _Entry:
    #: ``encode_body`` of the entry's profile resource.
    encoded_profile: bytes
    #: ``encode_body`` of each of its events' attributes.
    encoded_events: list[bytes] = field(default_factory=list)


def _around(template: bytes, *holes: bytes) -> list[bytes]:
    """``template`` cut at the first occurrence of each hole in turn: the bytes around the holes
    (an object's encoding fills a ``{}`` hole; a list's items go between the ``[`` and ``]`` put back
    for a ``[]`` hole)."""
    parts = []
    rest = template
    for hole in holes:
        before, rest = rest.split(hole, 1)
        parts.append(before)
    return [*parts, rest]


# The bytes of a body around what varies in it, so a body is assembled from its events' and profiles'
# encodings (made once anyway, to measure them) instead of being encoded again when it is sent.
_ENVELOPE = _around(encode_body(_bulk_envelope([])), b"[]")
_ENTRY = _around(encode_body(_bulk_entry({}, [])), b"{}", b"[]")
_EVENT = _around(encode_body({"type": "event", "attributes": {}}), b"{}")


def _encode_entries(entries: list[_Entry]) -> bytes:
    """``encode_body`` of the bulk body holding ``entries``, from the encodings already made."""
    event_before, event_after = _EVENT
    entry_before, entry_middle, entry_after = _ENTRY
    return b"".join((
        _ENVELOPE[0], b"[",
        b",".join(
            b"".join((
                entry_before, entry.encoded_profile, entry_middle, b"[",
                b",".join(b"".join((event_before, event, event_after)) for event in entry.encoded_events),
                b"]", entry_after,
            ))
            for entry in entries
        ),
        b"]", _ENVELOPE[1],
    ))


@dataclass
class _Encoded:
    """A call's events, built and encoded once: bodies are assembled from these encodings (the
    built dicts are not kept)."""

    #: ``encode_body`` of each event's profile resource: also what groups the events by profile.
    profile_keys: list[bytes]
    #: ``encode_body`` of each event's attributes.
    encoded_bodies: list[bytes]
    #: Bytes each event adds to a body, and each distinct profile's entry before its events.
    event_sizes: list[int]
    entry_sizes: dict[bytes, int]
    empty_size: int


def _encode(events: Sequence[EventPayload]) -> _Encoded:
    profile_keys = [encode_body(build_profile_resource(event["profile"])) for event in events]
    encoded_bodies = [encode_body(build_event_attributes(event)) for event in events]
    # An encoded wrapper is its encoding with ``{}`` in place of the wrapped object, plus that
    # object's own encoding: so each event and each distinct profile is encoded once.
    event_wrapper = len(encode_body({"type": "event", "attributes": {}})) - 2
    entry_wrapper = len(encode_body(_bulk_entry({}, []))) - 2
    return _Encoded(
        profile_keys, encoded_bodies,
        event_sizes=[event_wrapper + len(encoded) for encoded in encoded_bodies],
        entry_sizes={key: entry_wrapper + len(key) for key in profile_keys},
        empty_size=len(encode_body(_bulk_envelope([]))),
    )


@dataclass
class _Open:
    """The batch being filled."""

    size: int
    entries: list[_Entry] = field(default_factory=list)
    entry_of: dict[bytes, int] = field(default_factory=dict)
    positions: dict[tuple[int, ...], int] = field(default_factory=dict)
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def extra(self, encoded: _Encoded, position: int) -> int:
        """Bytes the event at ``position`` would add: its own, plus its profile's entry if new here."""
        key = encoded.profile_keys[position]
        if key in self.entry_of:
            return encoded.event_sizes[position] + 1
        return encoded.entry_sizes[key] + encoded.event_sizes[position] + (1 if self.entries else 0)

    def add(self, encoded: _Encoded, position: int, extra: int) -> None:
        key = encoded.profile_keys[position]
        entry_index = self.entry_of.get(key)
        if entry_index is None:
            entry_index = len(self.entries)
            self.entries.append(_Entry(key))
            self.entry_of[key] = entry_index
        entry = self.entries[entry_index]
        self.positions[(entry_index, len(entry.encoded_events))] = position
        entry.encoded_events.append(encoded.encoded_bodies[position])
        self.size += extra

    def batch(self) -> Batch:
        # Only the bytes are kept (Batch.body reads them back): a sender holds two batches of 20,000.
        return Batch(None, self.positions, EVENTS_POINTER, self.size, encoded=_encode_entries(self.entries))


def build_event_bulk_bodies(
    events: Sequence[EventPayload],
    max_events: int = BULK_CREATE.max_items or 1000,
    max_bytes: int = BULK_CREATE.max_bytes or 5_000_000,
) -> list[Batch]:
    """Bulk-create bodies for ``events``: grouped one entry per profile, chunked at ``max_events`` AND
    ``max_bytes`` (the body as sent). Each batch maps every event's index path back to its input position.

    Profiles are grouped by their whole built resource (e-mail, names, properties), so two rows whose
    profile data differ are never merged into one entry with one of them silently winning. An event too
    big for any body gets a batch of its own; Klaviyo's rejection then becomes that row's outcome.
    """
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, not {max_events}")
    encoded = _encode(events)
    batches: list[Batch] = []
    # Group by profile, keeping first-appearance order; repeats of a unique_id go round again.
    pending = _group(range(len(events)), encoded.profile_keys)
    while pending:
        deferred: list[int] = []
        current = _Open(encoded.empty_size)
        for position in pending:
            event = events[position]
            dedupe = [(who, event["metric"], _identity(event)) for who in _identifiers(event["profile"])]
            if any(key in current.seen for key in dedupe):
                deferred.append(position)
                continue
            extra = current.extra(encoded, position)
            if current.positions and (len(current.positions) >= max_events or current.size + extra > max_bytes):
                batches.append(current.batch())
                current = _Open(encoded.empty_size)
                extra = current.extra(encoded, position)
            current.add(encoded, position, extra)
            current.seen.update(dedupe)
        if current.positions:
            batches.append(current.batch())
        pending = _group(deferred, encoded.profile_keys)
    return batches


#: Profile attributes Klaviyo finds a profile by: two entries sharing one are one profile to it.
_IDENTIFIERS = ("email", "phone_number", "external_id")


def _identifiers(profile: Any) -> list[str]:
    """What makes two profile entries one profile in Klaviyo: any identifier they share (e-mail
    compared without case, as Klaviyo looks e-mails up), so two rows of one e-mail whose names
    differ (two entries in one body) still count as one profile for the repeat rule."""
    found = []
    for name in _IDENTIFIERS:
        value = profile.get(name) if isinstance(profile, dict) else None
        if isinstance(value, str) and value.strip():
            found.append(f"{name}:{value.strip().lower() if name == 'email' else value}")
    return found or [f"profile:{encode_body(profile).decode()}"]


def _identity(event: EventPayload) -> str:
    """What Klaviyo dedupes an event on besides profile and metric: its unique_id, else its time."""
    unique_id = event.get("unique_id")
    if unique_id:
        return f"id:{unique_id}"
    return f"time:{event.get('time') or ''}"


def _group(positions: Sequence[int] | range, keys: Sequence[bytes]) -> list[int]:
    """``positions`` reordered so each profile's rows are together, profiles in first-seen order."""
    groups: dict[bytes, list[int]] = {}
    for position in positions:
        groups.setdefault(keys[position], []).append(position)
    return [position for group in groups.values() for position in group]


def send_events(
    client: KlaviyoClient, events: Sequence[EventPayload], *, batches: Sequence[Batch] | None = None
) -> list[ItemOutcome]:
    """Send events in bulk; one :class:`ItemOutcome` per input event, in input order.

    ``batches``: ``build_event_bulk_bodies(events)``, when the caller built them ahead of the send.
    """
    return send_batches(client, events, build_event_bulk_bodies, BULK_CREATE, batches=batches)


def send_event(client: KlaviyoClient, event: EventPayload) -> ItemOutcome:
    """One event, through the bulk path (one code path for outcomes and rejections)."""
    return send_events(client, [event])[0]

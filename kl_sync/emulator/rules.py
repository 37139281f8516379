"""Klaviyo's request rules: body parsing, spec-shape errors, per-request limits and field rules.

Everything here is pure: a parsed body goes in, :class:`~kl_sync.emulator.storage.ProfileWrite` /
:class:`~kl_sync.emulator.storage.EventWrite` records and a list of :class:`Problem` come out. A
request with any problem is rejected whole, with one problem per offending value, each pointing at
it (``/data/attributes/events-bulk-create/data/17/attributes/events/data/0/attributes/time``), so a
client can fail exactly those items and resend the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from kl_sync.emulator.errors import Problem, fail, invalid, pointer
from kl_sync.emulator.spec import Operation
from kl_sync.emulator.storage import (
    IDENTIFIER_KINDS,
    PROFILE_ATTRIBUTES,
    EventWrite,
    ProfileWrite,
)

# Klaviyo's documented limits. Sizes are decimal (5 MB = 5,000,000 bytes): when the docs are vague,
# the emulator is the stricter side, so a client that passes here also passes at Klaviyo.
MAX_BODY_BYTES = 5_000_000
MAX_BODY_BYTES_BY_OPERATION = {"create_or_update_profile": 100_000}
MAX_STRING_BYTES = 100_000
MAX_PROFILE_BYTES = 100_000  # per profile in a bulk import
MAX_EVENTS_PER_BULK = 1_000
MAX_PROFILES_PER_IMPORT = 10_000
MAX_SUPPRESSIONS = 100
MAX_LIST_MEMBERS = 1_000
MAX_EVENT_PROPERTIES = 400
MAX_METRIC_NAME = 127  # "Must be less than 128 characters."
EARLIEST_EVENT = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)  # "must be after the year 1990"
LATEST_EVENT_AHEAD = dt.timedelta(days=365)  # "can only be up to 1 year in the future"

_EMAIL = re.compile(
    r"^(?=.{3,254}$)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The body as JSON; NaN/Infinity (which Python would accept) are not JSON and are refused."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(400, "parse_error", f"JSON parse error - {exc}", pointer="/") from None
    except RecursionError:
        raise fail(400, "parse_error", "JSON parse error - nested too deeply", pointer="/") from None


def check_size(operation: Operation, raw: bytes) -> None:
    limit = MAX_BODY_BYTES_BY_OPERATION.get(operation.operation_id, MAX_BODY_BYTES)
    if len(raw) > limit:
        raise fail(
            413,
            "payload_too_large",
            f"The request body is {len(raw):,} bytes; {operation.path} accepts at most {limit:,}.",
        )


def shape_problems(operation: Operation, body: Any, raw: bytes) -> list[Problem]:
    """The spec's request schema, plus Klaviyo's "a single string cannot exceed 100KB"."""
    problems = []
    assert operation.body_validator is not None
    for error in operation.body_validator.errors(body):
        problems.append(Problem(400, "invalid", error.message, pointer=pointer(error.path)))
    if might_hold_long_string(raw):
        for path, size in long_strings(body):
            problems.append(
                Problem(
                    400, "invalid", f"String is {size:,} bytes; at most {MAX_STRING_BYTES:,} allowed.", pointer(path)
                )
            )
    return problems


def might_hold_long_string(raw: bytes) -> bool:
    """False only when no JSON string in ``raw`` can decode to more than MAX_STRING_BYTES.

    A string never decodes to more bytes than its JSON text (escapes only shrink). With no escaped
    quote in the body, such a string's text is a run of over MAX_STRING_BYTES bytes without a quote
    mark, and any such run covers a whole aligned block of half that size: so if every block holds
    a quote mark, no string is too long. A dozen C-speed searches instead of a walk over 20,000
    values; anything unusual falls back to the exact walk (:func:`long_strings`)."""
    if len(raw) <= MAX_STRING_BYTES:
        return False
    if b'\\"' in raw:
        return True
    block = MAX_STRING_BYTES // 2
    return any(raw.find(b'"', start, start + block) < 0 for start in range(0, len(raw), block))


def long_strings(body: Any) -> list[tuple[tuple, int]]:
    """(path, UTF-8 size) of every string over :data:`MAX_STRING_BYTES`, keys included."""
    found = []
    stack: list[tuple[tuple, Any]] = [((), body)] if body.__class__ in (dict, list) else []
    while stack:
        path, value = stack.pop()
        pairs = value.items() if value.__class__ is dict else enumerate(value)
        for key, item in pairs:
            # A str of n characters is at most 4n UTF-8 bytes: encode only the ones that might be long.
            if key.__class__ is str and len(key) * 4 > MAX_STRING_BYTES:
                size = len(key.encode("utf-8"))
                if size > MAX_STRING_BYTES:
                    found.append(((*path, key), size))
            kind = item.__class__
            if kind is str:
                if len(item) * 4 > MAX_STRING_BYTES:
                    size = len(item.encode("utf-8"))
                    if size > MAX_STRING_BYTES:
                        found.append(((*path, key), size))
            elif kind is dict or kind is list:
                stack.append(((*path, key), item))
    return found


# --- helpers reading a body defensively (it may have failed the shape check) ---------------------


def _get(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None where the body has no such object member."""
    try:
        for key in keys:
            value = value[key]
    except (KeyError, TypeError, IndexError):
        return None
    return value


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# --- field rules -------------------------------------------------------------------------------


def parse_event_time(text: str) -> dt.datetime:
    """An ISO 8601 date-time WITH an offset (the spec's ``format: date-time`` is RFC 3339, which
    requires one). A naive time is refused rather than guessed: the store's times are naive local
    times, and sending one unconverted is exactly the bug this should catch."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset; send e.g. '2024-05-15T12:35:32-04:00'")
    return parsed.astimezone(dt.timezone.utc)


def _check_time(text: Any, path: tuple, now: dt.datetime, problems: list[Problem]) -> int | None:
    """Epoch seconds (truncated, as Klaviyo does) or None with a problem recorded."""
    if not isinstance(text, str):
        return None  # the shape check already reported it
    try:
        moment = parse_event_time(text)
    except ValueError as exc:
        problems.append(Problem(400, "invalid", str(exc), pointer(path)))
        return None
    if moment <= EARLIEST_EVENT:
        problems.append(Problem(400, "invalid", f"{text!r} is not after 1990.", pointer(path)))
        return None
    if moment > now + LATEST_EVENT_AHEAD:
        problems.append(Problem(400, "invalid", f"{text!r} is more than 1 year in the future.", pointer(path)))
        return None
    return int(moment.timestamp() // 1)


def valid_email(text: str) -> bool:
    return _EMAIL.match(text) is not None


def read_profile(resource: Any, path: tuple, problems: list[Problem]) -> ProfileWrite:
    """A profile resource object (``{"type": "profile", "id"?, "attributes", "meta"?}``).

    When the resource or its attributes are missing, the shape check has said so already; the
    identifier rule would only repeat it."""
    shaped = isinstance(resource, dict) and isinstance(resource.get("attributes"), dict)
    attributes = _dict(_get(resource, "attributes"))
    profile_id = _get(resource, "id")
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
    patch = _dict(_get(resource, "meta", "patch_properties") or _get(attributes, "meta", "patch_properties"))
    return ProfileWrite(
        path=path,
        id=profile_id if isinstance(profile_id, str) and profile_id else None,
        identifiers=identifiers,
        attributes={k: attributes[k] for k in PROFILE_ATTRIBUTES if k in attributes},
        properties=dict(properties) if isinstance(properties, dict) else None,
        patch_append=_dict(patch.get("append")),
        patch_unappend=_dict(patch.get("unappend")),
        patch_unset=_unset_keys(patch.get("unset")),
    )


def _unset_keys(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _read_event(
    attributes: dict,
    path: tuple,
    profile: ProfileWrite,
    backfill_default: bool,
    source: str,
    now: dt.datetime,
    problems: list[Problem],
) -> EventWrite:
    name = _get(attributes, "metric", "data", "attributes", "name")
    name_path = (*path, "metric", "data", "attributes", "name")
    if isinstance(name, str):
        if not name.strip():
            problems.append(Problem(400, "invalid", "The metric name must not be empty.", pointer(name_path)))
        elif len(name) > MAX_METRIC_NAME:
            problems.append(
                Problem(400, "invalid", "The metric name must be less than 128 characters.", pointer(name_path))
            )
    properties = _dict(attributes.get("properties"))
    if len(properties) > MAX_EVENT_PROPERTIES:
        problems.append(
            Problem(
                400,
                "invalid",
                f"{len(properties)} properties; an event may have at most {MAX_EVENT_PROPERTIES}.",
                pointer((*path, "properties")),
            )
        )
    raw_time = attributes.get("time")
    if raw_time is None:
        epoch = int(now.timestamp())  # "By default, the time the request was received will be used."
    else:
        epoch = _check_time(raw_time, (*path, "time"), now, problems)
    backfill = attributes.get("backfill")
    value = attributes.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    unique_id = attributes.get("unique_id")
    currency = attributes.get("value_currency")
    return EventWrite(
        path=path,
        profile=profile,
        metric=name.strip() if isinstance(name, str) else "",
        time=epoch or 0,
        unique_id=unique_id if isinstance(unique_id, str) else None,
        value=value if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
        value_currency=currency if isinstance(currency, str) else None,
        backfill=bool(backfill) if isinstance(backfill, bool) else backfill_default,
        properties=properties,
        source=source,
    )


@dataclass(frozen=True)
class Read:
    """What a write request asks for, once its rules have been applied."""

    events: list[EventWrite]
    profiles: list[ProfileWrite]
    problems: list[Problem]


def read_bulk_events(body: Any, now: dt.datetime) -> Read:
    """``POST /api/event-bulk-create-jobs``: one profile per entry, each with its events."""
    base = ("data", "attributes", "events-bulk-create", "data")
    entries = _list(_get(body, *base))
    problems: list[Problem] = []
    total = sum(len(_list(_get(e, "attributes", "events", "data"))) for e in entries)
    if total > MAX_EVENTS_PER_BULK:
        problems.append(
            Problem(
                400,
                "invalid",
                f"{total:,} events in one request; at most {MAX_EVENTS_PER_BULK:,} are accepted.",
                pointer(base),
            )
        )
    events: list[EventWrite] = []
    profiles: list[ProfileWrite] = []
    for index, entry in enumerate(entries):
        entry_path = (*base, index, "attributes")
        profile = read_profile(_get(entry, "attributes", "profile", "data"), (*entry_path, "profile", "data"), problems)
        profiles.append(profile)
        entry_backfill = _get(entry, "attributes", "backfill") is True
        for number, event in enumerate(_list(_get(entry, "attributes", "events", "data"))):
            event_path = (*entry_path, "events", "data", number, "attributes")
            events.append(
                _read_event(
                    _dict(_get(event, "attributes")), event_path, profile, entry_backfill, "server", now, problems
                )
            )
    return Read(events, profiles, problems)


def read_single_event(body: Any, now: dt.datetime, source: str) -> Read:
    """``POST /api/events`` and ``POST /client/events``: one event, its profile inside it."""
    problems: list[Problem] = []
    attributes = _dict(_get(body, "data", "attributes"))
    path = ("data", "attributes")
    profile = read_profile(_get(attributes, "profile", "data"), (*path, "profile", "data"), problems)
    event = _read_event(attributes, path, profile, False, source, now, problems)
    return Read([event], [profile], problems)


def read_profile_upsert(body: Any) -> Read:
    """``POST /api/profile-import``."""
    problems: list[Problem] = []
    profile = read_profile(_get(body, "data"), ("data",), problems)
    return Read([], [profile], problems)


def read_profile_import(body: Any) -> tuple[Read, list[str]]:
    """``POST /api/profile-bulk-import-jobs``: profiles, and the ids of lists to add them to."""
    base = ("data", "attributes", "profiles", "data")
    resources = _list(_get(body, *base))
    problems: list[Problem] = []
    if len(resources) > MAX_PROFILES_PER_IMPORT:
        problems.append(
            Problem(
                400,
                "invalid",
                f"{len(resources):,} profiles in one job; at most {MAX_PROFILES_PER_IMPORT:,} are accepted.",
                pointer(base),
            )
        )
    profiles = []
    for index, resource in enumerate(resources):
        size = len(json.dumps(resource, separators=(",", ":")).encode("utf-8"))
        if size > MAX_PROFILE_BYTES:
            problems.append(
                Problem(
                    400,
                    "invalid",
                    f"Profile is {size:,} bytes; at most {MAX_PROFILE_BYTES:,} per profile.",
                    pointer((*base, index)),
                )
            )
        profiles.append(read_profile(resource, (*base, index), problems))
    list_ids = [
        item["id"]
        for item in _list(_get(body, "data", "relationships", "lists", "data"))
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]
    return Read([], profiles, problems), list_ids


@dataclass(frozen=True)
class SuppressionRequest:
    emails: list[tuple[str, tuple]]  # (email, its path in the request)
    list_id: str | None
    segment_id: str | None
    problems: list[Problem]


def read_suppression(body: Any) -> SuppressionRequest:
    """``POST /api/profile-suppression-bulk-create-jobs``: emails, or every member of a list."""
    base = ("data", "attributes", "profiles", "data")
    resources = _list(_get(body, *base))
    problems: list[Problem] = []
    if len(resources) > MAX_SUPPRESSIONS:
        problems.append(
            Problem(
                400,
                "invalid",
                f"{len(resources):,} profiles in one request; at most {MAX_SUPPRESSIONS} emails are accepted.",
                pointer(base),
            )
        )
    emails = []
    for index, resource in enumerate(resources):
        email = _get(resource, "attributes", "email")
        where = (*base, index, "attributes", "email")
        if isinstance(email, str):
            if valid_email(email.strip()):
                emails.append((email.strip(), where))
            else:
                problems.append(Problem(400, "invalid", f"Invalid email address: {email!r}", pointer(where)))
    list_id = _get(body, "data", "relationships", "list", "data", "id")
    segment_id = _get(body, "data", "relationships", "segment", "data", "id")
    if not resources and not isinstance(list_id, str) and not isinstance(segment_id, str):
        problems.append(
            Problem(400, "invalid", "Give profiles to suppress, or a list or segment relationship.", pointer(base))
        )
    return SuppressionRequest(
        emails,
        list_id if isinstance(list_id, str) else None,
        segment_id if isinstance(segment_id, str) else None,
        problems,
    )


def read_list_create(body: Any) -> tuple[str, str | None, list[Problem]]:
    name = _get(body, "data", "attributes", "name")
    opt_in = _get(body, "data", "attributes", "opt_in_process")
    problems = []
    if isinstance(name, str) and not name.strip():
        problems.append(Problem(400, "invalid", "A list needs a name.", pointer(("data", "attributes", "name"))))
    return (name if isinstance(name, str) else ""), (opt_in if isinstance(opt_in, str) else None), problems


def read_list_members(body: Any) -> tuple[list[tuple[str, str]], list[Problem]]:
    """``POST /api/lists/{id}/relationships/profiles``: (profile id, pointer) pairs."""
    items = _list(_get(body, "data"))
    problems = []
    if len(items) > MAX_LIST_MEMBERS:
        problems.append(
            Problem(
                400,
                "invalid",
                f"{len(items):,} profiles in one call; at most {MAX_LIST_MEMBERS:,} are accepted.",
                pointer(("data",)),
            )
        )
    members = [
        (item["id"], pointer(("data", index, "id")))
        for index, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]
    return members, problems


def raise_problems(problems: list[Problem]) -> None:
    """Reject the request with every problem found (one per pointer and message)."""
    if problems:
        raise invalid(list(dict.fromkeys(problems)))


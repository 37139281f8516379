"""Events: ``POST /api/event-bulk-create-jobs`` (one profile per entry, each with its events) and
``POST /api/events`` / ``POST /client/events`` (one event, its profile inside it)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from kl_sync.constants import (  # Klaviyo's limits, the same numbers the client and the suites use
    EARLIEST_EVENT_YEAR, LATEST_EVENT_AHEAD_DAYS, MAX_EVENT_PROPERTIES, MAX_EVENTS_PER_BULK, MAX_METRIC_NAME,
)
from kl_sync.emulator.errors import Problem, pointer
from kl_sync.emulator.rules.common import Read, as_dict, as_list, get, too_many
from kl_sync.emulator.rules.profiles import read_profile
from kl_sync.emulator.storage.profiles import ProfileWrite
from kl_sync.emulator.storage.writes import EventWrite, dedupe_key

EARLIEST_EVENT = dt.datetime(EARLIEST_EVENT_YEAR, 1, 1, tzinfo=dt.timezone.utc)  # "must be after the year 1990"
LATEST_EVENT_AHEAD = dt.timedelta(days=LATEST_EVENT_AHEAD_DAYS)  # "can only be up to 1 year in the future"


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


def _check_metric_name(name: Any, path: tuple, problems: list[Problem]) -> None:
    if not isinstance(name, str):
        return  # the shape check already reported it
    if not name.strip():
        problems.append(Problem(400, "invalid", "The metric name must not be empty.", pointer(path)))
    elif len(name) > MAX_METRIC_NAME:
        problems.append(Problem(400, "invalid", "The metric name must be less than 128 characters.", pointer(path)))


def _read_event(
    attributes: dict,
    path: tuple,
    profile: ProfileWrite,
    backfill_default: bool,
    source: str,
    now: dt.datetime,
    problems: list[Problem],
) -> EventWrite:
    name = get(attributes, "metric", "data", "attributes", "name")
    _check_metric_name(name, (*path, "metric", "data", "attributes", "name"), problems)
    properties = as_dict(attributes.get("properties"))
    problems += too_many(
        len(properties),
        MAX_EVENT_PROPERTIES,
        "{count} properties; an event may have at most {limit}.",
        (*path, "properties"),
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


def read_bulk_events(body: Any, now: dt.datetime) -> Read:
    """``POST /api/event-bulk-create-jobs``: one profile per entry, each with its events."""
    base = ("data", "attributes", "events-bulk-create", "data")
    entries = as_list(get(body, *base))
    total = sum(len(as_list(get(e, "attributes", "events", "data"))) for e in entries)
    problems = too_many(
        total, MAX_EVENTS_PER_BULK, "{count:,} events in one request; at most {limit:,} are accepted.", base
    )
    events: list[EventWrite] = []
    profiles: list[ProfileWrite] = []
    for index, entry in enumerate(entries):
        entry_path = (*base, index, "attributes")
        profile = read_profile(get(entry, "attributes", "profile", "data"), (*entry_path, "profile", "data"), problems)
        profiles.append(profile)
        entry_backfill = get(entry, "attributes", "backfill") is True
        for number, event in enumerate(as_list(get(entry, "attributes", "events", "data"))):
            event_path = (*entry_path, "events", "data", number, "attributes")
            events.append(
                _read_event(
                    as_dict(get(event, "attributes")), event_path, profile, entry_backfill, "server", now, problems
                )
            )
    return Read(events, profiles, problems)


def read_single_event(body: Any, now: dt.datetime, source: str) -> Read:
    """``POST /api/events`` and ``POST /client/events``: one event, its profile inside it."""
    problems: list[Problem] = []
    attributes = as_dict(get(body, "data", "attributes"))
    path = ("data", "attributes")
    profile = read_profile(get(attributes, "profile", "data"), (*path, "profile", "data"), problems)
    event = _read_event(attributes, path, profile, False, source, now, problems)
    return Read([event], [profile], problems)


def repeated_in_request(events: list[tuple[EventWrite, str]]) -> list[Problem]:
    """A bulk request repeating a unique_id for the same profile and metric fails whole: "If a
    unique_id is repeated for the same profile and metric, the request will fail and no events will
    be processed" (``bulk_create_events``, ``BaseEventCreateQueryBulkEntryResourceObject`` ``unique_id``).
    "The same profile" is the profile the account resolved (two entries for one e-mail are one
    profile), so this runs on (event, profile id) pairs. Without a unique_id "this field will use the
    time to the second", so two such events in one second repeat it too. One problem per repeat,
    pointing at it."""
    seen: set[tuple[str, str, str]] = set()
    problems = []
    for event, profile_id in events:
        key = (profile_id, event.metric, dedupe_key(event))
        if key not in seen:
            seen.add(key)
            continue
        if event.unique_id is not None:
            what, where = f"unique_id {event.unique_id!r}", "unique_id"
        else:
            what, where = "time (the default unique_id, to the second)", "time"
        problems.append(Problem(
            400, "invalid",
            f"The {what} is repeated for the same profile and metric {event.metric!r} in this request; "
            "no events were processed.",
            pointer((*event.path, where)),
        ))
    return problems

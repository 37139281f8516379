"""Which of the events and suppressions kl-sync sent Klaviyo holds: the read side of a delivery.

A 202 from ``bulk_create_events`` only says the events were submitted for processing, and there is
no job to poll (the spec has no GET for event bulk-create jobs); only reading them back proves them.

**Events** (:func:`find_events`) are read with ``GET /api/events``, per metric (it filters by
``metric_id`` only) and per ``datetime`` window. An event's ``datetime`` is its own ``time`` (the
store's time, years back for a backfill), not when it was sent, so the windows come from the wanted
events' own times (:func:`plan_windows`): one window while they lie close, a new one where a gap
would hold more events than a page (``split_after``), so a few late events never read years of
history. Pages are followed by ``links.next`` (``page[size]`` says 1,000 is the maximum, the prose
says 200: nothing counts on a page's size), through the client's rate limiter, whose ``get_events``
windows (350/s, 3,500/min) are that endpoint's own, apart from bulk creation's.

How an event read back is matched to a wanted one:

1. **By unique_id**, where Klaviyo returns it: as ``event_properties.$event_id``
   (:data:`~kl_sync.klaviyo.reads.UNIQUE_ID_KEY`; our reading of Klaviyo's reserved properties, not
   documented for this endpoint: see ``kl_sync/klaviyo/reads.py``). A wanted event is found when an
   event of its metric has its unique_id and its time to the second (Klaviyo truncates times to the
   second). The profile is not compared: a profile's e-mail can change in Klaviyo after the event
   (an ``external_id`` update), and re-sending on the old e-mail would make a second profile and
   a second event. A same-second event of the same profile with another unique_id never matches.
2. **By metric, profile e-mail and time to the second**, only for events read back WITHOUT a
   ``$event_id`` (were Klaviyo not to return it), matched one to one: three order lines in one
   second need three events. This is the weaker match: an event another source recorded for the
   same profile in the same second can stand in for a lost one of ours.

**Suppressions** (:func:`find_suppressed`) are read from the profiles' ``subscriptions``
(``GET /api/profiles``, ``any(email, [...])``, 100 a request, ``additional-fields[profile]=subscriptions``):
an e-mail is suppressed when its profile's ``subscriptions.email.marketing.suppression`` lists any
global suppression. Polling the bulk suppression job was the other way; it was not chosen because a
job reports counts (``completed_count``, ``skipped_count``) for all its e-mails together, and a
skipped e-mail cannot be told from a suppressed one; the profile says, per e-mail, what holds now.
Any reason counts, not only ``USER_SUPPRESSED``: the store's fact is "no marketing e-mail to this
person", which a bounce or an unsubscribe Klaviyo already had also makes true (and whether Klaviyo
adds a second reason to an already suppressed profile is not documented). An **unsuppression**
(:func:`find_unsuppressed`) is proven when the profile lists no ``USER_SUPPRESSED`` suppression: the
only one ``bulk_unsuppress_profiles`` lifts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kl_sync.chunks import chunks
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.reads import (
    GET_EVENTS,
    GET_PROFILES,
    UNIQUE_ID_KEY,
    iter_event_pages,
    metric_ids_by_name,
    quote,
)

__all__ = ["ReadEvent", "WantedEvent", "Window", "find_events", "find_suppressed", "find_unsuppressed",
           "suppression_reasons", "match_events", "metric_ids_by_name",
           "plan_windows", "read_events", "split_after"]

#: The most events one page of ``GET /api/events`` holds (``page[size]`` maximum).
EVENTS_PAGE = GET_EVENTS.max_items or 1000
#: One window whatever the gaps, when nothing says how dense a metric is.
NEVER_SPLIT = dt.timedelta.max


@dataclass(frozen=True)
class WantedEvent:
    """An event kl-sync sent: its unique_id (the outbox key), metric and own time (aware)."""

    key: str
    metric: str
    time: dt.datetime

    @property
    def second(self) -> int:
        return math.floor(self.time.timestamp())


@dataclass
class Window:
    """``[start, end)`` of whole seconds, and the wanted events whose time lies in it."""

    start: dt.datetime
    end: dt.datetime
    events: list[WantedEvent] = field(default_factory=list)


def split_after(rows: int, first: dt.datetime, last: dt.datetime, *, page: int = EVENTS_PAGE) -> dt.timedelta:
    """The gap between two wanted events worth a window of its own: the time in which a page of this
    metric's events lies, on average (``rows`` events reached Klaviyo between ``first`` and ``last``).
    Splitting there costs one request and saves reading about a page."""
    span = (last - first).total_seconds()
    if rows < 2 or span <= 0:
        return NEVER_SPLIT
    return dt.timedelta(seconds=span * page / rows)


def plan_windows(events: Iterable[WantedEvent], *, split_after: dt.timedelta = NEVER_SPLIT) -> list[Window]:
    """The wanted events in time order, cut into windows wherever two neighbours are more than
    ``split_after`` apart. A window starts at its first event's second and ends after its last one's."""
    windows: list[Window] = []
    for event in sorted(events, key=lambda e: (e.time, e.key)):
        second = dt.datetime.fromtimestamp(event.second, dt.UTC)
        if not windows or event.time - windows[-1].events[-1].time > split_after:
            windows.append(Window(second, second + dt.timedelta(seconds=1)))
        window = windows[-1]
        window.events.append(event)
        window.end = max(window.end, second + dt.timedelta(seconds=1))
    return windows


@dataclass(frozen=True)
class ReadEvent:
    """What matching needs of an event read back: its ``$event_id`` (None when Klaviyo gave none),
    its time to the second, and its profile's e-mail."""

    unique_id: str | None
    second: int
    email: str | None


def read_events(pages: Iterable[Mapping[str, Any]]) -> Iterator[ReadEvent]:
    """The events of ``GET /api/events`` pages (with ``include=profile``), as matching reads them:
    two fields and a profile's e-mail each, nothing copied."""
    for page in pages:
        emails = {item.get("id"): (item.get("attributes") or {}).get("email")
                  for item in page.get("included") or [] if item.get("type") == "profile"}
        for resource in page.get("data") or []:
            attributes = resource.get("attributes") or {}
            when = attributes.get("datetime")
            if not isinstance(when, str):
                continue
            unique_id = (attributes.get("event_properties") or {}).get(UNIQUE_ID_KEY)
            profile = ((resource.get("relationships") or {}).get("profile") or {}).get("data") or {}
            yield ReadEvent(None if unique_id is None else str(unique_id),
                            math.floor(dt.datetime.fromisoformat(when).timestamp()), emails.get(profile.get("id")))


def match_events(
    wanted: Sequence[WantedEvent],
    read: Iterable[ReadEvent],
    emails: Callable[[Sequence[str]], Mapping[str, str]],
) -> set[str]:
    """The keys of ``wanted`` that events ``read`` back (of the same metric) hold: by unique_id and
    second; then, against events read without a ``$event_id`` only, one to one by e-mail and second
    (``emails``: keys -> their profile's e-mail, asked only then)."""
    by_unique_id: set[tuple[str, int]] = set()
    unidentified: Counter[tuple[str, int]] = Counter()
    for event in read:
        if event.unique_id is not None:
            by_unique_id.add((event.unique_id, event.second))
        elif event.email:
            unidentified[(event.email.strip().lower(), event.second)] += 1
    found = {w.key for w in wanted if (w.key, w.second) in by_unique_id}
    rest = [w for w in wanted if w.key not in found]
    if unidentified and rest:
        email_of = emails([w.key for w in rest])
        for w in rest:
            slot = ((email_of.get(w.key) or "").strip().lower(), w.second)
            if unidentified[slot] > 0:
                unidentified[slot] -= 1
                found.add(w.key)
    return found


def find_events(
    client: KlaviyoClient,
    wanted: Sequence[WantedEvent],
    *,
    split_after: Mapping[str, dt.timedelta] | None = None,
    emails: Callable[[Sequence[str]], Mapping[str, str]] = lambda keys: {},
    metric_ids: Mapping[str, list[str]] | None = None,
) -> set[str]:
    """The keys of ``wanted`` that Klaviyo holds, read metric by metric and window by window
    (``split_after``: per metric, see :func:`split_after`; absent, one window per metric).
    ``metric_ids``: Klaviyo's metric ids by name, when the caller has them (else one pass over
    ``GET /api/metrics``). Pages are matched as they come: one page is in memory at a time."""
    by_metric: dict[str, list[WantedEvent]] = {}
    for event in wanted:
        by_metric.setdefault(event.metric, []).append(event)
    if not by_metric:
        return set()
    # A metric Klaviyo does not have holds none of ours: nothing to read for it.
    ids = metric_ids_by_name(client) if metric_ids is None else metric_ids
    found: set[str] = set()
    for metric, events in sorted(by_metric.items()):
        gap = (split_after or {}).get(metric, NEVER_SPLIT)
        for window in plan_windows(events, split_after=gap):
            pages = (
                page
                for metric_id in ids.get(metric, [])
                for page in iter_event_pages(
                    client, metric_id=metric_id, since=window.start, until=window.end, include="profile",
                    fields={"event": "datetime,event_properties", "profile": "email"},
                )
            )
            found |= match_events(window.events, read_events(pages), emails)
    return found


def suppression_reasons(client: KlaviyoClient, emails: Sequence[str]) -> dict[str, set[str]]:
    """Per e-mail of ``emails`` (compared without case) that has a profile, the reasons of the global
    suppressions its ``subscriptions.email.marketing.suppression`` lists (empty: none)."""
    page = GET_PROFILES.max_items or 100
    found: dict[str, set[str]] = {}
    for chunk in chunks(list(dict.fromkeys(e.strip().lower() for e in emails)), page):
        params = {
            "filter": f"any(email,[{','.join(quote(e) for e in chunk)}])",
            "additional-fields[profile]": "subscriptions",
            "fields[profile]": "email,subscriptions",
            "page[size]": page,
        }
        for document in client.paginate(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id, params=params):
            for resource in document.get("data") or []:
                attributes = resource.get("attributes") or {}
                marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get("marketing") or {}
                if attributes.get("email"):
                    reasons = {str(s.get("reason")) for s in marketing.get("suppression") or [] if isinstance(s, dict)}
                    found.setdefault(str(attributes["email"]).strip().lower(), set()).update(reasons)
    return found


def find_suppressed(client: KlaviyoClient, emails: Sequence[str]) -> set[str]:
    """Which of ``emails`` (compared without case) Klaviyo suppresses: their profile lists a global
    suppression (any reason). An e-mail without a profile is not suppressed."""
    return {email for email, reasons in suppression_reasons(client, emails).items() if reasons}


def find_unsuppressed(client: KlaviyoClient, emails: Sequence[str]) -> set[str]:
    """Which of ``emails`` (compared without case) carry no ``USER_SUPPRESSED`` suppression: what an
    unsuppression can achieve (an unsubscribe, a bounce or a spam complaint it never lifts). An e-mail
    without a profile has none."""
    reasons = suppression_reasons(client, emails)
    return {e.strip().lower() for e in emails if "USER_SUPPRESSED" not in reasons.get(e.strip().lower(), set())}

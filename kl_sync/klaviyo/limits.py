"""Klaviyo's per-endpoint limits (revision 2026-07-15) as data, and a rate limiter that keeps to them.

Every endpoint the client calls is named by its OpenAPI ``operationId``; :data:`ENDPOINT_LIMITS` holds,
for each, the rate windows of its ``x-klaviyo-ratelimit`` (burst per second, steady per minute and,
for list creation, daily) and the per-request limits its description states. A test checks this table
against the official spec, so a new revision that changes a number fails loudly.

:class:`RateLimiter` is deliberately one method: in Prefect flows a global concurrency limit shared by
all workers stands in for :class:`WindowRateLimiter`, which only sees one process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from kl_sync.constants import (
    MAX_BODY_BYTES, MAX_EMAILS_PER_SUPPRESSION, MAX_EVENTS_PER_BULK, MAX_LIST_MEMBERS_PER_REQUEST, MAX_PROFILE_BYTES,
    MAX_PROFILES_PER_BULK,
)

SECOND = 1.0
MINUTE = 60.0
DAY = 86_400.0

# Klaviyo's content limits are defined once, in kl_sync/constants.py (the emulator and the suites
# use the same), in decimal bytes to stay on the safe side of either reading of "KB" and "MB".
FIVE_MB = MAX_BODY_BYTES
HUNDRED_KB = MAX_PROFILE_BYTES


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` requests in any ``seconds``-long window."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class EndpointLimits:
    operation_id: str
    method: str
    path: str
    windows: tuple[RateWindow, ...]
    #: Items one request may carry (events, profiles, e-mails, ids), or the page size maximum for a read.
    max_items: int | None = None
    #: Bytes one request body may have.
    max_bytes: int | None = None
    #: Bytes one item (an event, a profile) may have inside the body.
    max_item_bytes: int | None = None

    @property
    def burst(self) -> RateWindow:
        return self.windows[0]

    @property
    def steady(self) -> RateWindow:
        return self.windows[1]


def _limits(
    operation_id: str,
    method: str,
    path: str,
    burst: int,
    steady: int,
    *,
    daily: int | None = None,
    max_items: int | None = None,
    max_bytes: int | None = None,
    max_item_bytes: int | None = None,
) -> EndpointLimits:
    windows = [RateWindow(burst, SECOND), RateWindow(steady, MINUTE)]
    if daily is not None:
        windows.append(RateWindow(daily, DAY))
    return EndpointLimits(operation_id, method, path, tuple(windows), max_items, max_bytes, max_item_bytes)


_ALL = (
    # Writes.
    _limits("bulk_create_events", "POST", "/api/event-bulk-create-jobs", 10, 150,
            max_items=MAX_EVENTS_PER_BULK, max_bytes=FIVE_MB),
    _limits("create_event", "POST", "/api/events", 350, 3500, max_items=1, max_bytes=FIVE_MB),
    _limits("create_client_event", "POST", "/client/events", 350, 3500, max_items=1, max_bytes=FIVE_MB),
    _limits("bulk_import_profiles", "POST", "/api/profile-bulk-import-jobs", 10, 150,
            max_items=MAX_PROFILES_PER_BULK, max_bytes=FIVE_MB, max_item_bytes=HUNDRED_KB),
    _limits("create_or_update_profile", "POST", "/api/profile-import", 75, 750, max_items=1, max_bytes=HUNDRED_KB),
    _limits("create_client_profile", "POST", "/client/profiles", 350, 3500, max_items=1, max_bytes=HUNDRED_KB),
    _limits("bulk_suppress_profiles", "POST", "/api/profile-suppression-bulk-create-jobs", 75, 750,
            max_items=MAX_EMAILS_PER_SUPPRESSION),
    # Unsuppression ("Email address per request limit: 100"): lifts only USER_SUPPRESSED.
    _limits("bulk_unsuppress_profiles", "POST", "/api/profile-suppression-bulk-delete-jobs", 75, 750,
            max_items=MAX_EMAILS_PER_SUPPRESSION),
    _limits("create_list", "POST", "/api/lists", 10, 150, daily=150),
    _limits("add_profiles_to_list", "POST", "/api/lists/{id}/relationships/profiles", 10, 150,
            max_items=MAX_LIST_MEMBERS_PER_REQUEST),
    # Reads (max_items is the largest page size).
    _limits("get_events", "GET", "/api/events", 350, 3500, max_items=1000),
    _limits("get_profiles", "GET", "/api/profiles", 75, 750, max_items=100),
    _limits("get_metrics", "GET", "/api/metrics", 10, 150, max_items=200),
    _limits("get_lists", "GET", "/api/lists", 75, 750, max_items=10),
    _limits("get_bulk_import_profiles_job", "GET", "/api/profile-bulk-import-jobs/{job_id}", 10, 150),
    _limits("get_errors_for_bulk_import_profiles_job", "GET", "/api/profile-bulk-import-jobs/{id}/import-errors",
            10, 150, max_items=100),
    _limits("get_bulk_suppress_profiles_job", "GET", "/api/profile-suppression-bulk-create-jobs/{job_id}", 75, 750),
)

#: operationId -> its limits.
ENDPOINT_LIMITS: Mapping[str, EndpointLimits] = {limits.operation_id: limits for limits in _ALL}


@runtime_checkable
class RateLimiter(Protocol):
    """Blocks until a request to ``endpoint`` (an operationId) may be sent, and counts it as sent.

    A limiter may also have ``answered(endpoint, slot)``, which the client calls with what ``acquire``
    returned once the request has been answered (:meth:`WindowRateLimiter.answered`).
    """

    def acquire(self, endpoint: str) -> Any: ...


def scaled_windows(
    limits: Mapping[str, EndpointLimits], *, scale: float, margin: float
) -> dict[str, tuple[RateWindow, ...]]:
    """Each endpoint's windows as a limiter keeps them: ``seconds / scale + margin`` long. Every
    limiter (in-process, or shared through the state database) derives its windows here."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if margin < 0:
        raise ValueError(f"margin must not be negative, not {margin}")
    return {
        name: tuple(RateWindow(w.limit, w.seconds / scale + margin) for w in endpoint.windows)
        for name, endpoint in limits.items()
    }


#: How far back among the newest entries :meth:`WindowRateLimiter.answered` looks for a slot.
_IN_FLIGHT_SEARCH = 64


class WindowRateLimiter:
    """Sliding-window limiter for one process: every window of an endpoint (burst, steady, daily) at once.

    A sliding log (the send times of the last ``limit`` requests) never lets more than ``limit`` requests
    into ANY window of that length, so it also satisfies a server that counts fixed windows.

    ``scale`` shortens every window (length / scale), with the same meaning as the emulator's
    ``rate_scale``: 10.0 makes the burst window 0.1 s and the steady one 6 s, so a limiter built with
    the emulator's scale keeps to the emulator's windows. ``margin`` seconds are added to every window because the
    server counts arrival times, and two requests sent exactly one window apart can arrive slightly
    closer together. Endpoints not in ``limits`` are not limited.
    """

    def __init__(
        self,
        limits: Mapping[str, EndpointLimits] = ENDPOINT_LIMITS,
        *,
        scale: float = 1.0,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._windows = scaled_windows(limits, scale=scale, margin=margin)
        self._sent: dict[str, tuple[deque[float], ...]] = {
            name: tuple(deque(maxlen=w.limit) for w in windows) for name, windows in self._windows.items()
        }
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.scale = scale
        self.margin = margin

    def __repr__(self) -> str:
        return f"WindowRateLimiter(scale={self.scale}, margin={self.margin}, endpoints={len(self._windows)})"

    def acquire(self, endpoint: str) -> float | None:
        """Wait for a slot and take it; returns the slot's time, for :meth:`answered`."""
        windows = self._windows.get(endpoint)
        if windows is None:
            return None
        logs = self._sent[endpoint]
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(windows, logs, now)
                if wait <= 0:
                    for log in logs:
                        log.append(now)
                    return now
            # Sleep outside the lock so other endpoints (and threads) are not held up.
            self._sleep(wait)

    def answered(self, endpoint: str, slot: float | None) -> None:
        """The request sent in ``slot`` has been answered: from now on it counts as sent now.

        Klaviyo counts a request when it arrives, somewhere between its slot and its answer. Counted
        from its slot, a request held up on its way (a busy interpreter, a slow network) lets the
        request one window later arrive less than a window after it, and that one gets a 429: seen
        in benchmark 1 with the 20 ms margin. Counted from its answer, it never can.
        """
        if slot is None or endpoint not in self._sent:
            return
        with self._lock:
            now = self._clock()
            for log in self._sent[endpoint]:
                # Every later entry was taken before now, so the moved entry stays in time order.
                # The slot is among the newest, unless as many requests have been sent since (gone).
                for index in range(len(log) - 1, max(len(log) - _IN_FLIGHT_SEARCH, 0) - 1, -1):
                    if log[index] == slot:
                        del log[index]
                        log.append(now)
                        break

    @staticmethod
    def _wait(windows: tuple[RateWindow, ...], logs: tuple[deque[float], ...], now: float) -> float:
        """Seconds until one more request fits every window (0 when it fits now)."""
        wait = 0.0
        for window, log in zip(windows, logs, strict=True):
            # The log holds the last ``limit`` send times; when full, the oldest must leave the window.
            if len(log) == window.limit:
                wait = max(wait, log[0] + window.seconds - now)
        return wait

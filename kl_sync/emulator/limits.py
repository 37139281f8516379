"""Klaviyo's rate limits: fixed windows per endpoint, burst (1 s) and steady (1 min), per account.

Every client of one emulator shares the windows (one account), as every worker of one Klaviyo account
shares Klaviyo's. ``scale`` shortens every window (10.0: burst 0.1 s, steady 6 s) so a benchmark
sees the real shape of throttling in a tenth of the time; ``Retry-After`` and ``RateLimit-Reset``
are then decimal seconds instead of whole ones.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kl_sync.emulator.spec import RateLimit


@dataclass(frozen=True)
class Admission:
    """The limiter's answer: admitted or not, and the headers to send with the answer."""

    admitted: bool
    headers: dict[str, str]


def format_seconds(seconds: float, scale: float) -> str:
    """Whole seconds, rounded up, at real scale (as Klaviyo sends them); decimals when scaled."""
    if scale == 1.0:
        return str(max(1, math.ceil(seconds - 1e-9)))
    return f"{max(seconds, 0.001):.3f}"


class RateWindows:
    """Fixed-window counters keyed by (operation, window): :meth:`admit` answers whether one more
    request fits every window of its operation. Only admitted requests count."""

    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if scale <= 0:
            raise ValueError("rate_scale must be positive")
        self.scale = scale
        self._clock = clock
        # Windows are counted from the limiter's start: where Klaviyo's clock-aligned windows fall
        # is invisible to a client, and this keeps a test's first window from splitting mid-test.
        self._origin = clock()
        self._lock = threading.Lock()
        #: (operation, window name) -> (window index, count)
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}

    def admit(self, operation_id: str, windows: tuple[RateLimit, ...]) -> Admission:
        with self._lock:
            now = self._clock() - self._origin
            state = []
            blocked_until = 0.0
            for window in windows:
                length = window.seconds / self.scale
                index = math.floor(now / length)
                seen_index, count = self._counts.get((operation_id, window.name), (index, 0))
                if seen_index != index:
                    count = 0
                reset = (index + 1) * length - now
                state.append((window, index, count, reset))
                if count >= window.limit:
                    blocked_until = max(blocked_until, reset)
            if blocked_until > 0:
                return Admission(False, {"Retry-After": format_seconds(blocked_until, self.scale)})
            for window, index, count, _ in state:
                self._counts[(operation_id, window.name)] = (index, count + 1)
            # Klaviyo's RateLimit-* headers describe the steady window.
            steady = next((s for s in state if s[0].name == "steady"), state[-1] if state else None)
            if steady is None:
                return Admission(True, {})
            window, _, count, reset = steady
            return Admission(
                True,
                {
                    "RateLimit-Limit": str(window.limit),
                    "RateLimit-Remaining": str(max(0, window.limit - count - 1)),
                    "RateLimit-Reset": format_seconds(reset, self.scale),
                },
            )

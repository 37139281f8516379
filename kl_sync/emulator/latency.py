"""A network between the client and the emulator: every request and its answer take time on the way.

Real clients reach Klaviyo over the internet, ~50–300 ms a round trip; on localhost the emulator
answers in a fraction of that, so a client that keeps one request in flight looks as fast as the
rate windows allow when it would not be over a real network. :class:`LatencyMiddleware`, the
outermost layer of the app, holds each request for half of its round trip before the emulator sees
it (so the rate windows and the journal count its arrival, as Klaviyo counts arrivals) and its
answer for the other half before the first byte leaves.

Each round trip is ``latency`` seconds, or with ``jitter`` drawn uniformly from
``latency ± jitter`` (never below 0) by a ``random.Random(seed)``: the same seed gives the same
sequence of delays. Requests travel concurrently, as they do over a network: one held request never
holds up another.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

from kl_sync.emulator.journal import Receive, Scope, Send


class LatencyMiddleware:
    """ASGI middleware delaying every HTTP request by half a round trip and its answer by the other half."""

    def __init__(self, app: Any, *, latency: float, jitter: float = 0.0, seed: int = 0) -> None:
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        self.app = app
        self.latency = latency
        self.jitter = jitter
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def round_trip(self) -> float:
        """The next request's round trip, in seconds."""
        if not self.jitter:
            return self.latency
        with self._lock:
            drawn = self._random.uniform(self.latency - self.jitter, self.latency + self.jitter)
        return max(0.0, drawn)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        half = self.round_trip() / 2
        await asyncio.sleep(half)
        answer_delayed = False

        async def send_later(message: dict[str, Any]) -> None:
            nonlocal answer_delayed
            if not answer_delayed:
                # The answer's way back: its first message waits, the rest follow it.
                answer_delayed = True
                await asyncio.sleep(half)
            await send(message)

        await self.app(scope, receive, send_later)

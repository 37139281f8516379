"""What Klaviyo does with an event after answering 202: processes it, later, or (rarely) never.

A 202 is not an event in Klaviyo. ``create_event``'s description says "Successful response indicates
that the event was validated and submitted for processing, but does not guarantee that processing is
complete" (``apis/create_event.json``, ``op.description``); ``bulk_create_events`` answers 202 with no
body at all and has no job to poll (``apis/bulk_create_events.json``, ``responses``; ``stable.json``
has no GET on ``/api/event-bulk-create-jobs``). So the emulator keeps each accepted event unreadable
until ``processing_delay`` seconds after its request was accepted, and silently drops a ``lose`` share
of accepted events, one by one (users of every Klaviyo integration report "success responses, but
some events never appear"). A lost event was never processed, so its ``unique_id`` is not taken: the
same event sent again is kept.

The draws come from ``random.Random(seed)``, in the order events are accepted: the same seed loses
the same events of the same sequence of requests.
"""

from __future__ import annotations

import random
import threading
import time


class EventProcessing:
    """The processing one emulator applies to accepted events; thread-safe, changeable while it runs."""

    def __init__(self, delay: float = 0.0, lose: float = 0.0, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.set(delay=delay, lose=lose, seed=seed)

    def set(self, *, delay: float | None = None, lose: float | None = None, seed: int | None = None) -> None:
        """Change the delay and the loss (a new ``seed``, or a new ``lose``, restarts the draws)."""
        if delay is not None and delay < 0:
            raise ValueError("processing delay must not be negative")
        if lose is not None and not 0.0 <= lose <= 1.0:
            raise ValueError("lose must be between 0 and 1")
        with self._lock:
            if delay is not None:
                self.delay = float(delay)
            if lose is not None or seed is not None:
                self.lose = float(lose) if lose is not None else self.lose
                self.seed = seed if seed is not None else self.seed
                self._random = random.Random(self.seed)

    def lost(self, count: int) -> list[bool]:
        """For each of ``count`` accepted events, in order: is it lost?"""
        with self._lock:
            if self.lose <= 0:
                return [False] * count
            return [self._random.random() < self.lose for _ in range(count)]

    def ready_at(self, accepted: float | None = None) -> float:
        """When an event accepted at ``accepted`` (epoch seconds; now by default) can be read back.
        Without a delay, from the start of time: a wall clock stepping back can never hide it."""
        if self.delay <= 0:
            return 0.0
        return (time.time() if accepted is None else accepted) + self.delay

"""Injected faults: what goes wrong between a client and Klaviyo, on purpose and repeatably.

A :class:`FaultSpec` applies to write requests (POST) before they are processed, so a faulted request
stored nothing, except ``slow`` (answers normally after a delay) and ``drop_after_commit`` (stores,
then drops the connection: the client cannot know its write landed, the nastiest real case).
``drop`` closes the TCP connection with a reset and no HTTP answer at all.

The draws come from ``random.Random(seed)``: the same seed gives the same sequence of outcomes for
the same sequence of write requests. :meth:`FaultPlan.fail_next` queues exact faults for one path,
ahead of the random ones, for tests that need a particular failure now.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

NAMED_KINDS = ("slow", "drop", "drop_after_commit")
DEFAULT_MIX: Mapping[str, float] = {"429": 1, "500": 1, "503": 1, "slow": 1, "drop": 1}


def _check_kind(kind: str) -> None:
    if kind in NAMED_KINDS:
        return
    if kind.isdigit() and 400 <= int(kind) <= 599:
        return
    raise ValueError(f"unknown fault kind {kind!r}: use an HTTP status 400-599 or one of {NAMED_KINDS}")


@dataclass(frozen=True)
class FaultSpec:
    """``rate``: share of write requests that fail; ``mix``: relative weight of each kind."""

    rate: float = 0.2
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 0
    slow_seconds: float = 2.0
    #: Retry-After (seconds) sent with injected 429s.
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("fault mix needs at least one kind with a positive weight")
        for kind in self.mix:
            _check_kind(str(kind))
        if self.slow_seconds < 0 or self.retry_after < 0:
            raise ValueError("slow_seconds and retry_after must not be negative")


@dataclass(frozen=True)
class Fault:
    kind: str  # an HTTP status as text ("429"), or one of NAMED_KINDS
    retry_after: float | None = None
    slow_seconds: float = 0.0

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


class FaultPlan:
    """The faults one emulator injects; thread-safe, changeable while it runs."""

    def __init__(self, spec: FaultSpec | None = None):
        self._lock = threading.Lock()
        self._queued: dict[str, deque[Fault]] = {}
        self.set(spec)

    def set(self, spec: FaultSpec | None) -> None:
        with self._lock:
            self._spec = spec
            self._random = random.Random(spec.seed if spec else 0)

    def fail_next(
        self,
        path: str,
        status: int | str,
        count: int = 1,
        retry_after: float | None = None,
        slow_seconds: float = 2.0,
    ) -> None:
        """The next ``count`` requests to ``path`` (any method) get this fault: an HTTP status, or
        ``"drop"``, ``"drop_after_commit"`` or ``"slow"``."""
        kind = str(status)
        _check_kind(kind)
        if kind == "429" and retry_after is None:
            retry_after = 1.0
        fault = Fault(kind, retry_after=retry_after, slow_seconds=slow_seconds)
        path = path.rstrip("/") or "/"
        with self._lock:
            self._queued.setdefault(path, deque()).extend([fault] * count)

    def draw(self, method: str, path: str) -> Fault | None:
        with self._lock:
            queued = self._queued.get(path)
            if queued:
                return queued.popleft()
            spec = self._spec
            if spec is None or method != "POST" or spec.rate <= 0:
                return None
            if self._random.random() >= spec.rate:
                return None
            kinds = list(spec.mix)
            kind = str(self._random.choices(kinds, weights=[spec.mix[k] for k in kinds])[0])
        return Fault(
            kind,
            retry_after=spec.retry_after if kind == "429" else None,
            slow_seconds=spec.slow_seconds,
        )

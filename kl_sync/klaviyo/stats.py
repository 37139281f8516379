"""What the client counts: one record per HTTP attempt (for logs and callers' hooks) and totals per
endpoint and status (for run summaries). Neither holds a header, a body or the key."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP attempt, for run summaries and logs. Holds no header, body or key."""

    method: str
    path: str
    endpoint: str
    attempt: int
    #: HTTP status, or None when no response came back (timeout, dropped connection).
    status: int | None
    #: The error class name when the attempt failed (``RetryableError``, ``RejectedError``, ...).
    error: str | None
    #: The error's message (already free of secrets).
    detail: str | None
    retry_after: float | None
    #: Seconds the client will sleep before the next attempt; None when there is none.
    backoff: float | None
    elapsed: float
    started_at: float


@dataclass
class ClientStats:
    """Counts for run summaries. Safe to read while other threads use the client."""

    requests: int = 0
    retries: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, endpoint: str, status: int | None, *, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1
            self.by_status["no response" if status is None else str(status)] += 1
            if retry:
                self.retries += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
            }

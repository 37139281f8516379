"""Klaviyo's rate limits as Prefect global concurrency limits, for workers that share a Prefect server.

:class:`PrefectRateLimiter` implements the client's ``RateLimiter`` protocol (``acquire(endpoint)``)
with ``prefect.concurrency.sync.rate_limit``: every request takes one slot of the limit named
``klaviyo-<operationId>`` (dashes for underscores), whichever worker sends it. Create one limit per
endpoint the sender uses, with the steady window as its decay, e.g. for bulk event creation
(150 per minute, burst 10):

    prefect gcl create klaviyo-bulk-create-events --limit 10 --slot-decay-per-second 2.5

The limits must exist: acquiring is strict, so a missing limit fails the run instead of sending
without one.
"""

from __future__ import annotations

from typing import Any

from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, RateLimiter

PREFIX = "klaviyo-"


def limit_name(endpoint: str) -> str:
    return PREFIX + endpoint.replace("_", "-")


def gcl_create_commands(scale: float = 1.0) -> list[str]:
    """The ``prefect gcl create`` command for each endpoint: the burst as the slots, the steady
    rate (per second) as their decay."""
    commands = []
    for name, limits in sorted(ENDPOINT_LIMITS.items()):
        decay = limits.steady.limit / (limits.steady.seconds / scale)
        commands.append(f"prefect gcl create {limit_name(name)} --limit {limits.burst.limit} "
                        f"--slot-decay-per-second {decay:g}")
    return commands


class PrefectRateLimiter:
    """``acquire(endpoint)`` takes a slot of the Prefect global concurrency limit for that endpoint."""

    def __init__(self, *, timeout_seconds: float | None = None) -> None:
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"PrefectRateLimiter(timeout_seconds={self.timeout_seconds})"

    def acquire(self, endpoint: str) -> None:
        from prefect.concurrency.sync import rate_limit

        if endpoint in ENDPOINT_LIMITS:
            rate_limit(limit_name(endpoint), occupy=1, timeout_seconds=self.timeout_seconds, strict=True)


def flow_rate_limiter(settings: Any, kind: str, scale: float = 1.0) -> RateLimiter:
    """The flow parameter ``rate_limit`` as a limiter: ``local``, ``shared`` (the state database) or
    ``prefect`` (global concurrency limits)."""
    from kl_sync.app.clients import rate_limiter

    if kind == "prefect":
        return PrefectRateLimiter()
    return rate_limiter(settings, kind, scale=scale)

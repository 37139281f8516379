"""The one retry policy: how often kl-sync tries again, at its two levels, and how long it waits.

Two different things are retried, and each has its own :class:`Retries`:

- ``request``: the attempts of ONE HTTP request, inside :class:`~kl_sync.klaviyo.client.KlaviyoClient`
  (a 429, a 5xx, a dropped connection). Waits are jittered ("full jitter": anywhere up to the
  exponential ceiling) and never end before Klaviyo's ``Retry-After``.
- ``outbox``: the sends of ONE outbox row, by the sender across batches and runs, once the client's own
  attempts gave up. The row waits the exponential delay itself before it is due again, and becomes a
  dead letter after its last send.

Both wait ``first_wait`` after the first failure, doubling up to ``longest_wait``. The settings hold
the policy (:attr:`kl_sync.settings.Settings.retry`); the client and the sender are given their part.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Retries:
    """At most ``attempts`` tries; after failed try ``n`` wait ``first_wait · 2^(n-1)``, at most
    ``longest_wait`` (seconds)."""

    attempts: int
    first_wait: float
    longest_wait: float

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if not 0 <= self.first_wait <= self.longest_wait:
            raise ValueError(f"waits must satisfy 0 <= first_wait <= longest_wait, not {self.first_wait}, {self.longest_wait}")

    def wait(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failed tries (1 for the first failure)."""
        return min(self.longest_wait, self.first_wait * 2 ** max(failed_attempts - 1, 0))


#: One HTTP request: 6 attempts, waits up to 0.5 s, 1 s, 2 s … 30 s (jittered, at least Retry-After).
REQUEST_RETRIES = Retries(attempts=6, first_wait=0.5, longest_wait=30.0)
#: One outbox row: 8 sends, due again after 30 s, 1 min, 2 min … 1 h.
OUTBOX_RETRIES = Retries(attempts=8, first_wait=30.0, longest_wait=3600.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Both levels of retrying, named apart (they used to both be called ``max_attempts``)."""

    #: Attempts of one HTTP request (the client).
    request: Retries = field(default=REQUEST_RETRIES)
    #: Sends of one outbox row (the sender), before it becomes a dead letter.
    outbox: Retries = field(default=OUTBOX_RETRIES)

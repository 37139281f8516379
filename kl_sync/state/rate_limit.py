"""A rate limiter shared by every worker on one state database, with no other service to run.

Klaviyo counts an account's requests per endpoint, whoever sends them. Four sender processes each
with its own :class:`~kl_sync.klaviyo.limits.WindowRateLimiter` would send up to four times the limit;
:class:`StateRateLimiter` keeps one sliding log per endpoint in the state database instead
(``rate_limit_sends``: the send time of each recent request) and lets a request go only when every
window of that endpoint (burst, steady, daily) has room. Deciding and recording happen in one
transaction that holds the endpoint's row in ``rate_limit_endpoints`` locked, so two workers never
both take the last slot of a window — on PostgreSQL and MariaDB by the row lock, on SQLite by its
single writer.

Send times are the workers' wall clocks (``time.time()``): workers on one host agree exactly; hosts
need synchronised clocks (NTP keeps them within a few milliseconds, well inside ``margin``). Each
acquire costs one short transaction, and each answer one short update (:meth:`StateRateLimiter.answered`);
a worker that must wait sleeps outside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from sqlalchemy import Engine, delete, insert, select, update

from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, EndpointLimits, scaled_windows
from kl_sync.state.inserts import insert_ignoring_duplicates
from kl_sync.state.tables import rate_limit_endpoints, rate_limit_sends


class StateRateLimiter:
    """The :class:`~kl_sync.klaviyo.limits.RateLimiter` protocol over the state database.

    ``scale`` and ``margin`` mean what they mean for ``WindowRateLimiter``: windows last
    ``seconds / scale + margin``. The margin is larger by default because the requests of different
    processes can reach Klaviyo in a slightly different order than they were allowed."""

    def __init__(
        self,
        engine: Engine,
        limits: Mapping[str, EndpointLimits] = ENDPOINT_LIMITS,
        *,
        scale: float = 1.0,
        margin: float = 0.05,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._engine = engine
        self._windows = scaled_windows(limits, scale=scale, margin=margin)
        self._known: set[str] = set()
        self._clock = clock
        self._sleep = sleep
        self.scale = scale
        self.margin = margin

    def __repr__(self) -> str:
        return f"StateRateLimiter(scale={self.scale}, margin={self.margin}, url={self._engine.url!r})"

    def acquire(self, endpoint: str) -> int | None:
        """Wait for a slot and take it; returns the slot's row id, for :meth:`answered`."""
        windows = self._windows.get(endpoint)
        if windows is None:
            return None
        self._ensure_row(endpoint)
        longest = max(w.seconds for w in windows)
        while True:
            with self._engine.begin() as conn:
                # Locks the endpoint's row until commit: the next worker reads the log only after
                # this one's decision (and send time) is in it.
                conn.execute(
                    update(rate_limit_endpoints)
                    .where(rate_limit_endpoints.c.endpoint == endpoint)
                    .values(acquisitions=rate_limit_endpoints.c.acquisitions + 1)
                )
                now = self._clock()
                wait = 0.0
                for window in windows:
                    # The limit-th most recent send inside the window: while it is there, the window is full.
                    nth = conn.execute(
                        select(rate_limit_sends.c.sent_at)
                        .where(rate_limit_sends.c.endpoint == endpoint, rate_limit_sends.c.sent_at > now - window.seconds)
                        .order_by(rate_limit_sends.c.sent_at.desc())
                        .offset(window.limit - 1)
                        .limit(1)
                    ).scalar()
                    if nth is not None:
                        wait = max(wait, nth + window.seconds - now)
                if wait <= 0:
                    slot = conn.execute(insert(rate_limit_sends).values(endpoint=endpoint, sent_at=now)).inserted_primary_key
                    conn.execute(
                        delete(rate_limit_sends).where(
                            rate_limit_sends.c.endpoint == endpoint, rate_limit_sends.c.sent_at < now - longest
                        )
                    )
                    return int(slot[0])
            self._sleep(wait)

    def answered(self, endpoint: str, slot: int | None) -> None:
        """The request sent in ``slot`` has been answered: from now on it counts as sent now.

        As for :meth:`~kl_sync.klaviyo.limits.WindowRateLimiter.answered`: Klaviyo counts a request
        when it arrives, somewhere before its answer, so a request held up on its way cannot make the
        next window's request arrive early. Moving a send later only ever makes other workers wait
        longer, so this needs no lock on the endpoint's row.
        """
        if slot is None:
            return
        with self._engine.begin() as conn:
            conn.execute(update(rate_limit_sends).where(rate_limit_sends.c.id == slot).values(sent_at=self._clock()))

    def _ensure_row(self, endpoint: str) -> None:
        """The endpoint's row, created by whichever worker comes first (an upsert: two workers
        starting together must not trip on its primary key)."""
        if endpoint in self._known:
            return
        with self._engine.begin() as conn:
            insert_ignoring_duplicates(conn, rate_limit_endpoints, ("endpoint", "acquisitions"), [(endpoint, 0)],
                                       "endpoint")
        self._known.add(endpoint)

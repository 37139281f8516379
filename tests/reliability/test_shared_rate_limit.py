"""The shared rate limiter on its own: two limiters (two workers) on one state database share every
window of an endpoint; the wait they are told is exactly until the oldest request leaves the window."""

from __future__ import annotations

from pathlib import Path

from kl_sync.klaviyo.limits import EndpointLimits, RateWindow
from kl_sync.state.migrate import open_state
from kl_sync.state.rate_limit import StateRateLimiter

LIMITS = {"bulk_create_events": EndpointLimits("bulk_create_events", "POST", "/api/event-bulk-create-jobs",
                                               (RateWindow(2, 1.0), RateWindow(3, 60.0)))}


class FakeTime:
    """One clock for both workers; sleeping moves it forward and remembers the waits."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds


def test_two_workers_share_the_burst_and_the_steady_window(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    time = FakeTime()
    first, second = (StateRateLimiter(state, LIMITS, margin=0.0, clock=time.clock, sleep=time.sleep) for _ in range(2))

    first.acquire("bulk_create_events")
    second.acquire("bulk_create_events")
    assert time.waits == []                      # two fit the 1 s burst window
    first.acquire("bulk_create_events")
    assert time.waits == [1.0]                   # the third waits for the burst window, whoever asks
    second.acquire("bulk_create_events")
    assert time.waits[1:] == [59.0]              # the fourth waits for the 60 s window (3 per minute)
    first.acquire("unlimited_endpoint")          # endpoints without limits never wait
    assert len(time.waits) == 2


def test_scale_and_margin_shape_the_windows(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    time = FakeTime()
    limiter = StateRateLimiter(state, LIMITS, scale=10.0, margin=0.05, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        limiter.acquire("bulk_create_events")
    assert time.waits == [0.15]  # 1 s / 10 + 0.05


def test_a_request_counts_from_its_answer(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    time = FakeTime()
    first, second = (StateRateLimiter(state, LIMITS, margin=0.0, clock=time.clock, sleep=time.sleep) for _ in range(2))
    slot = first.acquire("bulk_create_events")
    time.now += 0.3  # answered 0.3 s later
    first.answered("bulk_create_events", slot)
    second.acquire("bulk_create_events")
    second.acquire("bulk_create_events")
    # The burst window (2 per 1 s) frees a whole second after the first request's ANSWER.
    assert time.waits == [1.0]
    assert time.now == 1_000_001.3
    first.answered("unlimited_endpoint", first.acquire("unlimited_endpoint"))  # no slot, nothing to do

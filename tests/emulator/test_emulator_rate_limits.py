"""Klaviyo's fixed burst and steady windows per endpoint, shared by every client of one account."""

from __future__ import annotations

from pathlib import Path

import pytest

from kl_sync.emulator import running_emulator
from kl_sync.emulator.limits import RateWindows, format_seconds
from kl_sync.emulator.spec import RateLimit, operation
from tests.emulator.klaviyo_bodies import Api, bulk_entry, bulk_events, event

WINDOWS = (RateLimit("burst", 10, 1.0), RateLimit("steady", 150, 60.0))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_spec_sets_each_endpoints_windows():
    assert operation("bulk_create_events").rate_limits == WINDOWS
    assert [(w.name, w.limit) for w in operation("bulk_suppress_profiles").rate_limits] == [
        ("burst", 75), ("steady", 750)
    ]
    assert [(w.name, w.limit, w.seconds) for w in operation("create_list").rate_limits][-1] == ("daily", 150, 86400.0)


def test_burst_window_admits_ten_a_second():
    clock = Clock()
    limiter = RateWindows(clock=clock)
    answers = [limiter.admit("bulk_create_events", WINDOWS) for _ in range(11)]
    assert [a.admitted for a in answers] == [True] * 10 + [False]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["149", "148", "147"]
    assert answers[0].headers["RateLimit-Limit"] == "150"
    assert answers[0].headers["RateLimit-Reset"] == "60"
    assert answers[10].headers == {"Retry-After": "1"}
    clock.now += 0.25
    assert limiter.admit("bulk_create_events", WINDOWS).headers == {"Retry-After": "1"}
    clock.now += 0.75
    assert limiter.admit("bulk_create_events", WINDOWS).admitted


def test_steady_window_admits_150_a_minute_across_bursts():
    clock = Clock()
    limiter = RateWindows(clock=clock)
    admitted = 0
    for _ in range(15):
        for _ in range(10):
            admitted += limiter.admit("bulk_create_events", WINDOWS).admitted
        clock.now += 1.0
    assert admitted == 150
    blocked = limiter.admit("bulk_create_events", WINDOWS)
    assert not blocked.admitted
    assert blocked.headers == {"Retry-After": "45"}  # 15 s into the minute
    assert limiter.admit("get_events", operation("get_events").rate_limits).admitted  # its own windows
    clock.now += 45.0
    assert limiter.admit("bulk_create_events", WINDOWS).admitted


def test_scaled_windows_are_shorter_and_report_decimal_seconds():
    clock = Clock()
    limiter = RateWindows(scale=10.0, clock=clock)
    for _ in range(10):
        assert limiter.admit("x", WINDOWS).admitted
    assert limiter.admit("x", WINDOWS).headers == {"Retry-After": "0.100"}
    clock.now += 0.1
    ok = limiter.admit("x", WINDOWS)
    assert ok.admitted and ok.headers["RateLimit-Reset"] == "5.900"


@pytest.mark.parametrize(("seconds", "scale", "text"), [(0.2, 1.0, "1"), (1.0, 1.0, "1"), (1.01, 1.0, "2"),
                                                        (0.0123, 10.0, "0.012"), (0.0, 2.0, "0.001")])
def test_format_seconds(seconds, scale, text):
    assert format_seconds(seconds, scale) == text


def _bulk(tag: str) -> dict:
    return bulk_events([bulk_entry("rate@example.com", [event(unique_id=tag)])])


def test_over_http_the_eleventh_request_in_a_burst_is_throttled(tmp_path: Path):
    # scale 0.001 makes every window 1,000 times LONGER (burst 1,000 s): no test can straddle one.
    with running_emulator(tmp_path / "k", rate_limits="real", rate_scale=0.001) as emu:
        one, two = Api(emu.base_url), Api(emu.base_url)
        answers = [(one if i % 2 else two).post("/api/event-bulk-create-jobs", _bulk(f"r{i}")) for i in range(11)]
        assert [a.status_code for a in answers] == [202] * 10 + [429]
        assert [a.headers["RateLimit-Remaining"] for a in answers[:10]] == [str(149 - i) for i in range(10)]
        assert all(a.headers["RateLimit-Limit"] == "150" for a in answers[:10])
        throttled = answers[10]
        assert float(throttled.headers["Retry-After"]) > 900
        assert "RateLimit-Remaining" not in throttled.headers
        (error,) = throttled.json()["errors"]
        assert (error["status"], error["code"]) == (429, "throttled")
        assert len(emu.events()) == 10
        other = one.get("/api/events")
        assert other.status_code == 200 and other.headers["RateLimit-Limit"] == "3500"
        rejected = one.post("/api/events", {"data": {}})
        assert rejected.status_code == 400 and "RateLimit-Remaining" in rejected.headers


def test_rate_limits_off_sends_no_headers_and_never_throttles(fresh_api):
    answers = [fresh_api.post("/api/event-bulk-create-jobs", _bulk(f"off{i}")) for i in range(25)]
    assert {a.status_code for a in answers} == {202}
    assert not any("RateLimit-Limit" in a.headers for a in answers)

"""Error classification, Retry-After parsing, the limits table against the spec, and the window limiter."""

from __future__ import annotations

import json
import pickle
import threading

import pytest

from kl_sync.klaviyo.errors import (
    AuthError,
    KlaviyoError,
    RejectedError,
    RetryableError,
    error_for_response,
    parse_retry_after,
)
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, RateLimiter, WindowRateLimiter
from tests.spec_oracle import SPEC_DIR, operation

POINTER = "/data/attributes/events-bulk-create/data/17/attributes/events/data/2/attributes/time"


def error_body(*errors: dict) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, RejectedError), (404, RejectedError), (409, RejectedError), (413, RejectedError),
     (401, AuthError), (403, AuthError),
     (408, RetryableError), (429, RetryableError), (500, RetryableError), (502, RetryableError),
     (503, RetryableError), (504, RetryableError), (524, RetryableError)],
)
def test_each_status_falls_in_exactly_one_class(status: int, cls: type[KlaviyoError]) -> None:
    error = error_for_response(status, {}, b"", endpoint="bulk_create_events")
    assert type(error) is cls
    assert error.status == status
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_success_is_no_error(status: int) -> None:
    assert error_for_response(status, {}, b"{}", endpoint="get_events") is None


def test_a_rejection_carries_the_json_api_errors_with_their_pointers() -> None:
    body = error_body(
        {"id": "1", "code": "invalid", "title": "Invalid input.", "detail": "time has no UTC offset",
         "source": {"pointer": POINTER}},
        {"id": "2", "code": "invalid", "title": "Invalid input.", "detail": "bad email",
         "source": {"pointer": "/data/attributes/events-bulk-create/data/3/attributes/profile"}},
    )
    error = error_for_response(400, {}, body, endpoint="bulk_create_events")
    assert isinstance(error, RejectedError)
    assert [e["source"]["pointer"] for e in error.errors] == [POINTER, "/data/attributes/events-bulk-create/data/3/attributes/profile"]
    assert "time has no UTC offset" in error.message and POINTER in error.message


def test_a_non_json_error_body_still_classifies() -> None:
    error = error_for_response(502, {}, b"<html>Bad gateway</html>", endpoint="get_events")
    assert isinstance(error, RetryableError) and error.errors == []
    assert "Bad Gateway" in str(error)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.25", 0.25), (" 1.5 ", 1.5), ("0", 0.0), ("-2", 0.0), ("soon", None), ("", None), (None, None),
     ("nan", None), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(header, now=now) == seconds


def test_a_429_carries_retry_after() -> None:
    error = error_for_response(429, {"Retry-After": "0.750"}, b"", endpoint="bulk_create_events")
    assert isinstance(error, RetryableError) and error.retry_after == 0.75


def test_errors_survive_pickling_with_their_fields() -> None:
    # Prefect and worker processes pickle exceptions; the pointers must arrive with them.
    original = error_for_response(400, {}, error_body({"id": "1", "code": "invalid", "title": "t", "detail": "d",
                                                       "source": {"pointer": POINTER}}), endpoint="bulk_create_events")
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is RejectedError
    assert (copy.message, copy.status, copy.endpoint, copy.errors) == (
        original.message, original.status, original.endpoint, original.errors)


# ----------------------------------------------------------------------------------------- limits


def _spec_windows(operation_id: str) -> list[tuple[int, float]]:
    _, _, op = operation(operation_id)
    unit = {"s": 1.0, "m": 60.0, "d": 86_400.0}
    windows = []
    for text in op["x-klaviyo-ratelimit"].values():
        count, per = text.split("/")
        windows.append((int(count), unit[per]))
    return sorted(windows, key=lambda w: w[1])


@pytest.mark.parametrize("operation_id", sorted(ENDPOINT_LIMITS))
def test_limits_table_matches_the_official_spec(operation_id: str) -> None:
    limits = ENDPOINT_LIMITS[operation_id]
    method, path, op = operation(operation_id)
    assert (limits.method, limits.path) == (method, path)
    assert [(w.limit, w.seconds) for w in limits.windows] == _spec_windows(operation_id)
    description = op["description"].replace(",", "")
    if limits.max_items and limits.max_items > 1 and method == "POST":
        assert str(limits.max_items) in description, f"{operation_id}: per-request limit not in the spec text"
    if method == "GET" and limits.max_items:
        page_size = next((p for p in op.get("parameters", []) if p["name"] == "page[size]"), None)
        if page_size is not None:
            assert page_size["schema"]["maximum"] == limits.max_items


def test_every_spec_slice_the_client_needs_is_in_the_table() -> None:
    assert {path.stem for path in SPEC_DIR.glob("*.json")} <= set(ENDPOINT_LIMITS)


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def max_in_any_window(times: list[float], length: float) -> int:
    return max(sum(1 for t in times if start <= t < start + length) for start in times)


def test_window_limiter_keeps_burst_and_steady_windows() -> None:
    fake = FakeTime()
    limiter = WindowRateLimiter(scale=1.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    assert isinstance(limiter, RateLimiter)
    sent = []
    for _ in range(400):
        limiter.acquire("bulk_create_events")  # 10/s, 150/min
        sent.append(fake.now)
    assert sent[:10] == [1000.0] * 10
    assert sent[10] == 1001.0
    assert max_in_any_window(sent, 1.0) == 10
    assert max_in_any_window(sent, 60.0) == 150
    # 400 requests at 150/min need the third minute: as fast as allowed, no slower.
    assert sent[-1] == 1120.0 + 9.0


def test_window_limiter_scale_shortens_windows_like_the_emulator() -> None:
    fake = FakeTime()
    limiter = WindowRateLimiter(scale=10.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    sent = []
    for _ in range(160):
        limiter.acquire("bulk_create_events")
        sent.append(fake.now)
    assert max_in_any_window(sent, 0.1) == 10
    assert max_in_any_window(sent, 6.0) == 150
    assert sent[150] == pytest.approx(1006.0)


def test_window_limiter_margin_and_unknown_endpoints() -> None:
    fake = FakeTime()
    limiter = WindowRateLimiter(margin=0.05, clock=fake.clock, sleep=fake.sleep)
    for _ in range(11):
        limiter.acquire("create_list")
    assert fake.now == pytest.approx(1001.05)
    before = fake.now
    for _ in range(1000):
        limiter.acquire("not_an_endpoint")
    assert fake.now == before
    with pytest.raises(ValueError):
        WindowRateLimiter(scale=0)


def test_window_limiter_counts_a_request_from_its_answer() -> None:
    fake = FakeTime()
    limiter = WindowRateLimiter(margin=0.0, clock=fake.clock, sleep=fake.sleep)  # create_list: 10 a second
    first = limiter.acquire("create_list")
    second = limiter.acquire("create_list")
    fake.now += 0.4  # both are answered 0.4 s later, the first after the second
    limiter.answered("create_list", second)
    limiter.answered("create_list", first)
    for _ in range(8):
        limiter.acquire("create_list")
    # The 11th request waits a whole window after the first ANSWER (1000.4), not after its slot.
    limiter.acquire("create_list")
    assert fake.now == pytest.approx(1001.4)
    limiter.answered("not_an_endpoint", 1.0)  # nothing to count: no error
    limiter.answered("create_list", None)


def test_window_limiter_is_shared_safely_by_threads() -> None:
    fake = FakeTime()
    time_lock = threading.Lock()
    last_read = threading.local()

    def clock() -> float:
        # The limiter reads the clock under its lock and grants with that reading: remember it per thread.
        last_read.value = fake.now
        return fake.now

    def sleep(seconds: float) -> None:
        with time_lock:
            fake.now += seconds

    limiter = WindowRateLimiter(margin=0.0, clock=clock, sleep=sleep)
    granted: list[float] = []
    granted_lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            limiter.acquire("bulk_suppress_profiles")  # 75/s
            with granted_lock:
                granted.append(last_read.value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 200
    assert max_in_any_window(sorted(granted), 1.0) == 75

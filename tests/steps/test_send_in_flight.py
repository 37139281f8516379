"""Requests in flight: the sender keeps up to ``in_flight`` requests of one endpoint on the way at
once (when their order cannot matter), inside the rate limiter's windows, and every guarantee holds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from kl_sync import state as st
from kl_sync.emulator import running_emulator
from kl_sync.kinds import EVENTS, PROFILES
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.errors import AuthError
from kl_sync.klaviyo.limits import WindowRateLimiter
from kl_sync.klaviyo.stats import RequestRecord
from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.send import _Call, _Flights, send_outbox
from tests.steps.test_send import _event


def _most_at_once(records: list[RequestRecord]) -> int:
    """The most requests that were on the way at the same moment (from each one's start to its answer)."""
    edges = sorted([(r.started_at, 1) for r in records] + [(r.started_at + r.elapsed, -1) for r in records])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _statuses(state):
    with state.connect() as conn:
        return Counter(conn.execute(select(outbox.c.status)).scalars())


def _queue(state, n: int) -> None:
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(n)])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_bulk_requests_are_in_flight_together_up_to_the_bound(state_url, tmp_path: Path):
    state = open_state(state_url)
    _queue(state, 12_000)
    records: list[RequestRecord] = []
    with running_emulator(tmp_path / "acct", latency=0.6) as emu:
        client = KlaviyoClient(emu.api_key, emu.base_url, on_request=records.append)
        result = send_outbox(state, client, batch_size=20_000, in_flight=3)
        shown = sorted(e["unique_id"] for e in emu.events())
    assert result.details["sent_events"] == 12_000 and _statuses(state) == {"sent": 12_000}
    assert shown == sorted(f"log:{i}" for i in range(12_000))
    # 12 requests of 1,000, at most 3 on the way at once (and more than one: a 0.6 s round trip
    # is far longer than it takes to post the next).
    assert len(records) == 12
    assert _most_at_once(records) == 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_one_at_a_time_unless_told(state_url, tmp_path: Path):
    state = open_state(state_url)
    _queue(state, 4000)
    records: list[RequestRecord] = []
    with running_emulator(tmp_path / "acct", latency=0.3) as emu:
        send_outbox(state, KlaviyoClient(emu.api_key, emu.base_url, on_request=records.append), batch_size=20_000)
    assert len(records) == 4 and _most_at_once(records) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_in_flight_requests_stay_inside_klaviyos_windows(state_url, tmp_path: Path):
    """Klaviyo's real windows shortened tenfold (burst 10 per 0.1 s, 150 per 6 s), a round trip with
    jitter, four in flight: the limiter still counts every request from its answer, so none is refused."""
    state = open_state(state_url)
    _queue(state, 25_000)
    records: list[RequestRecord] = []
    with running_emulator(tmp_path / "acct", rate_limits="real", rate_scale=10, latency=0.05, jitter=0.04) as emu:
        client = KlaviyoClient(emu.api_key, emu.base_url, limiter=WindowRateLimiter(scale=10),
                               on_request=records.append)
        result = send_outbox(state, client, batch_size=20_000, in_flight=4)
    assert result.details["sent_events"] == 25_000 and result.details["retries"] == 0
    assert [r.status for r in records] == [202] * 25
    assert client.stats.as_dict()["retries"] == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_auth_error_with_requests_in_flight_hands_every_row_back(state_url, tmp_path: Path):
    state = open_state(state_url)
    _queue(state, 6000)
    with running_emulator(tmp_path / "acct", latency=0.2) as emu:
        with pytest.raises(AuthError):
            send_outbox(state, KlaviyoClient("pk_wrong_key", emu.base_url), batch_size=20_000, in_flight=4)
    assert _statuses(state) == {"pending": 6000}
    with state.connect() as conn:
        assert conn.execute(select(outbox.c.id).where(outbox.c.lease_owner.is_not(None))).all() == []
        assert conn.execute(select(outbox.c.attempts).distinct()).scalars().all() == [0]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_answers_in_flight_when_the_key_is_refused_are_still_recorded(state_url, tmp_path: Path):
    """The second request is refused (401) while the first and third are on the way: the first
    and third were delivered and are recorded sent; only the refused call's rows and those never
    posted go back."""
    state = open_state(state_url)
    _queue(state, 8000)
    with running_emulator(tmp_path / "acct", latency=0.4) as emu:
        emu.fail_next("/api/event-bulk-create-jobs", "slow", count=1, slow_seconds=0.0)
        emu.fail_next("/api/event-bulk-create-jobs", 401, count=1)
        with pytest.raises(AuthError):
            send_outbox(state, KlaviyoClient(emu.api_key, emu.base_url), batch_size=20_000, in_flight=3)
        delivered = len(emu.events())
    statuses = _statuses(state)
    assert statuses["sent"] == delivered and delivered % 1000 == 0 and delivered >= 1000
    assert statuses["pending"] == 8000 - delivered
    with state.connect() as conn:
        assert conn.execute(select(outbox.c.id).where(outbox.c.lease_owner.is_not(None))).all() == []


def test_an_operation_whose_order_matters_has_one_request_in_flight():
    """Profile imports (last one wins) go one at a time whatever the bound; events go up to it."""
    on_the_way = Counter[str]()
    most = Counter[str]()
    lock = threading.Lock()

    def call(operation) -> _Call:
        def send(client) -> list:
            with lock:
                on_the_way[operation.name] += 1
                most[operation.name] = max(most[operation.name], on_the_way[operation.name])
            time.sleep(0.05)
            with lock:
                on_the_way[operation.name] -= 1
            return []

        return _Call([], operation, send)

    landed: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        flights = _Flights(pool, None, lambda c, outcomes: landed.append(c.operation.name), in_flight=4)
        for operation in [EVENTS, PROFILES] * 6:
            flights.post(call(operation))
        flights.land_all()
    assert landed == ["events", "profiles"] * 6  # recorded in the order posted
    assert most["profiles"] == 1
    assert 1 < most["events"] <= 4


def test_the_in_flight_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch):
    assert load_settings().send_in_flight == 4
    monkeypatch.setenv("KL_SYNC_SEND_IN_FLIGHT", "8")
    assert load_settings().send_in_flight == 8
    monkeypatch.setenv("KL_SYNC_SEND_IN_FLIGHT", "0")
    with pytest.raises(Exception, match="send_in_flight|SEND_IN_FLIGHT"):
        load_settings()


def test_a_call_is_freed_once_recorded_while_the_rest_of_its_batch_is_sent():
    """A batch's calls (each its rows' text and its bodies, ~2 MB per 1,000 order events) are let go
    one by one as they are posted and recorded, not all kept until the batch's last is posted."""
    import gc
    import weakref
    from collections import deque

    from kl_sync.steps.send import _send_calls

    refs: list[weakref.ref] = []
    alive_at_each_post: list[int] = []

    def send(client) -> list:  # called for call k: how many of calls 0..k-1, posted before it, are alive
        gc.collect()
        posted_before = refs[:len(alive_at_each_post)]
        alive_at_each_post.append(sum(1 for ref in posted_before if ref() is not None))
        return []

    calls = deque(_Call([], EVENTS, send) for _ in range(6))
    refs.extend(weakref.ref(call) for call in calls)
    with ThreadPoolExecutor(max_workers=2) as pool:
        flights = _Flights(pool, None, lambda call, outcomes: None, in_flight=1)
        _send_calls(None, flights, calls)
        flights.land_all()
    # Of the calls posted before, at most the one just answered (its outcome being recorded) is alive.
    assert len(alive_at_each_post) == 6 and max(alive_at_each_post) <= 1, alive_at_each_post

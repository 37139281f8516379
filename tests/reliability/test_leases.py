"""Leases (issue 14, items 4 and 6): outcomes check the lease owner, and nothing is given up on
while another worker holds it.

A worker that stalls past its lease (a long GC pause, a suspended VM, a state database away for a
while) finds its rows claimed by another worker when its answer finally comes: it must then mark
nothing — the rows are the other worker's, who will send and record them — and say how many."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kl_sync import state as st
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.state.delivery import claimed_rows
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import PENDING, SENT, dead_letters, outbox
from kl_sync.steps.send import send_outbox
from tests.dbs import backend_params
from tests.reliability.helpers import BULK_EVENTS


def _event(n: int) -> st.OutboxItem:
    key = f"log:{n}"
    return st.OutboxItem(key, "log_event", {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": key,
        "properties": {"n": n}, "profile": {"email": f"lease-{n}@example.com"}, "backfill": True,
    })


def _rows(engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.key: (r.status, r.lease_owner) for r in conn.execute(select(outbox.c.key, outbox.c.status,
                                                                             outbox.c.lease_owner))}


def _letters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()


@pytest.mark.parametrize("backend", backend_params())
def test_a_lost_lease_marks_nothing_and_its_new_holder_marks_everything(state_url: str) -> None:
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event(n) for n in range(4)])
    # Worker A claims with a one-minute lease and stalls; two minutes on, worker B takes the rows.
    stale = st.claim(engine, limit=10, lease_seconds=60, owner="a")
    live = st.claim(engine, limit=10, lease_seconds=3600, owner="b", now=st.utcnow() + dt.timedelta(minutes=2))
    assert [i.key for i in live] == [i.key for i in stale] and live[0].lease != stale[0].lease
    a0, a1, a2, a3 = stale
    with engine.begin() as conn:
        assert st.mark_sent(conn, [a0.id], run_id="a", lease=a0.lease) == 0
        assert not st.mark_retry(conn, a1.id, attempts=1, error="503", next_attempt_at=st.utcnow(), lease=a1.lease)
        assert not st.mark_dead(conn, a2, step="send", reason="rejected by Klaviyo: bad", run_id="a")
        assert st.release(conn, [a3.id], lease=a3.lease) == 0
    assert set(_rows(engine).values()) == {(PENDING, live[0].lease)} and _letters(engine) == 0
    # Verification reads rows back without a claim: a row under a live lease is not its to give up on.
    with engine.begin() as conn:
        (read_back,) = claimed_rows(conn, [a2.id])
        assert read_back.lease is None
        assert not st.mark_dead(conn, read_back, step="verify", reason="never appeared", run_id="v")
    b0, b1, b2, b3 = live
    with engine.begin() as conn:
        assert st.mark_sent(conn, [b0.id, b1.id], run_id="b", lease=b0.lease) == 2
        assert st.mark_dead(conn, b2, step="send", reason="rejected by Klaviyo: bad", run_id="b")
        assert st.release(conn, [b3.id], lease=b3.lease) == 1
    rows = _rows(engine)
    assert [rows[k] for k in ("log:0", "log:1", "log:2", "log:3")] == [(SENT, None), (SENT, None), ("dead", None),
                                                                      (PENDING, None)]
    assert _letters(engine) == 1
    # A row released (no lease at all) may be given up on by verification again.
    with engine.begin() as conn:
        assert st.mark_dead(conn, claimed_rows(conn, [b3.id])[0], step="verify", reason="never appeared", run_id="v")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_sender_whose_lease_is_taken_over_mid_request_counts_lease_lost(state_url: str, emulator) -> None:
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event(n) for n in range(30)])
    # The one request is answered after 6 s; the lease lasts 1 s; another worker claims the rows at ~1.5 s.
    emulator.fail_next(BULK_EVENTS, "slow", count=1, slow_seconds=6)
    taken: list[st.ClaimedItem] = []

    def take_over() -> None:
        while not any(owner for _, owner in _rows(engine).values()):
            time.sleep(0.05)
        deadline = time.time() + 10
        while not taken and time.time() < deadline:
            time.sleep(0.25)
            taken.extend(st.claim(engine, limit=100, lease_seconds=60, owner="other"))

    thief = threading.Thread(target=take_over)
    thief.start()
    result = send_outbox(engine, KlaviyoClient(emulator.api_key, emulator.base_url), lease_seconds=1,
                         batch_size=100, max_batches=1)
    thief.join()
    assert len(taken) == 30
    assert result.details["lease_lost"] == 30
    assert set(_rows(engine).values()) == {(PENDING, taken[0].lease)}  # the other worker's, untouched
    assert _letters(engine) == 0

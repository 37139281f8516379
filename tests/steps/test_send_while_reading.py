"""The sender beside the store-reading steps: it sends what they committed while they still read, and
loses or doubles nothing (SQLite state, the emulator over real HTTP)."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from kl_sync import state as st
from kl_sync.app.run import SYNC_GC_THRESHOLD, collecting_less, run_sync
from kl_sync.db import make_engine
from kl_sync.kinds import EVENTS, kind_of, metric_names
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.send import OutboxFeed, quality_validator, send_outbox
from kl_sync.store.generate import generate_store
from tests.reliability.helpers import accepted_unique_ids, collector_thresholds, settings_for

END = dt.datetime(2026, 11, 1, 12, 0)


def _events(first: int, count: int) -> list[st.OutboxItem]:
    return [st.OutboxItem(f"log:{i}", "log_event", {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": f"log:{i}",
        "properties": {"n": i}, "profile": {"email": f"p{i}@example.com"}, "backfill": True,
    }) for i in range(first, first + count)]


def _until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_fed_sender_sends_each_commit_before_the_feed_closes_and_stops_after(tmp_path, emulator):
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    feed = OutboxFeed()
    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    done: dict[str, object] = {}
    sender = threading.Thread(target=lambda: done.update(result=send_outbox(state, client, feed=feed, in_flight=2)))
    sender.start()
    try:
        # Nothing is queued yet: the sender waits on the feed instead of stopping.
        time.sleep(1.5 * OutboxFeed.POLL_SECONDS)
        assert sender.is_alive()
        for chunk in range(3):
            with state.begin() as conn:
                st.enqueue(conn, _events(chunk * 1_500, 1_500))
            feed.committed()
            # Each chunk reaches Klaviyo while the feed is still open: the sender never waits for the end.
            assert _until(lambda: len(emulator.events()) == (chunk + 1) * 1_500), len(emulator.events())
            assert sender.is_alive()
        with state.begin() as conn:
            st.enqueue(conn, _events(4_500, 10))  # committed just before the steps end
        feed.committed()
    finally:
        feed.close()
        sender.join(timeout=120)
    assert not sender.is_alive()
    result = done["result"]
    assert result.details["sent_events"] == 4_510
    assert Counter(e["unique_id"] for e in emulator.events()) == Counter(f"log:{i}" for i in range(4_510))
    with state.connect() as conn:
        assert dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()) == {"sent": 4_510}


def test_a_cancelled_feed_stops_the_sender_and_hands_back_what_it_claimed(tmp_path, emulator):
    state = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    with state.begin() as conn:
        st.enqueue(conn, _events(0, 3_000))
    feed = OutboxFeed()
    feed.cancel()
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), feed=feed)
    assert result.details["sent_events"] == 0
    assert emulator.events() == []
    with state.connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
        leased = conn.execute(select(func.count()).where(outbox.c.lease_owner.is_not(None))).scalar()
    assert statuses == {"pending": 3_000} and leased == 0


def test_the_initial_sync_sends_before_the_store_steps_finish(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    generate_store(make_engine(store_url), customers_count=60, seed=3, end=END)
    # Small chunks: the store steps commit many times, as a large store's do at the default size.
    settings = settings_for(store_url, state_url, emulator.base_url, emulator.api_key, chunk_size=100)
    # GX imported first (seconds in a fresh interpreter), so the sender is ready when the first chunk is.
    warm = _events(0, 1)[0]
    quality_validator(metric_names(load_settings()))(warm.kind, [(warm.key, warm.payload)])
    counts = run_sync(settings, steps=["parse", "orders", "customers", "suppress", "send"], from_start=True)

    state = open_state(state_url)
    with state.connect() as conn:
        last_queued = conn.execute(select(func.max(outbox.c.created_at))).scalar()
        rows = conn.execute(select(outbox.c.key, outbox.c.kind)).all()
        statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
    keys = [r.key for r in rows if kind_of(r.kind).operation is EVENTS]
    first_post = min(r["ts"] for r in emulator.journal() if r["path"] == "/api/event-bulk-create-jobs")
    # The first bulk request arrived before the store steps queued their last rows.
    assert first_post < last_queued.replace(tzinfo=dt.UTC).timestamp()
    # Nothing lost, nothing doubled: every queued event accepted once, every row sent.
    queued = sum(counts[step]["queued"] for step in ("parse", "orders", "customers", "suppress"))
    assert set(statuses) == {"sent"} and statuses["sent"] == queued
    assert accepted_unique_ids(emulator.journal()) == Counter(keys)
    assert counts["send"]["sent_events"] == len(keys)


@pytest.mark.parametrize(("store_process", "loaded"), [(True, True), (False, False)])
def test_a_from_start_run_loads_the_suites_before_the_key_is_checked(store_process, loaded, tmp_path, emulator,
                                                                     monkeypatch):
    """The initial sync begins loading GX's suites (seconds in a fresh interpreter) before the key
    check and the store process's start, on a thread of its own, so the first bulk request does not
    wait for them: with a refused key the run stops at the check, and the suites were loaded all the
    same. Steps read in this process (no store process) would share its interpreter lock with the
    import: nothing is loaded ahead for them."""
    from kl_sync.app.run import run_sync as run
    from kl_sync.klaviyo.errors import AuthError
    from kl_sync.quality import suites

    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    generate_store(make_engine(store_url), customers_count=5, seed=3, end=END)
    settings = settings_for(store_url, state_url, emulator.base_url, "pk_refused", store_process=store_process)
    for thread in threading.enumerate():  # an earlier run's warm-up would load into the dict below
        if thread.name == "kl-sync-gx-warm-up":
            thread.join(60)
    monkeypatch.setattr(suites, "_engines", {})  # as in a fresh interpreter: no suites loaded yet
    with pytest.raises(AuthError):
        run(settings, steps=["parse", "orders", "customers", "suppress", "send"], from_start=True)
    for thread in threading.enumerate():
        if thread.name == "kl-sync-gx-warm-up":
            thread.join(60)
    assert (suites.SUITES_DIR.resolve() in suites._engines) is loaded
    assert [line["path"] for line in emulator.journal()] == ["/api/profiles"]  # stopped at the key check


def test_a_sync_collects_garbage_less_often_and_gives_the_collector_back_as_it_was(tmp_path, emulator):
    store_url, state_url = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'state.db'}"
    generate_store(make_engine(store_url), customers_count=30, seed=5, end=END)
    settings = settings_for(store_url, state_url, emulator.base_url, emulator.api_key)
    before = gc.get_threshold()
    with collector_thresholds() as during:
        counts = run_sync(settings, steps=["parse", "orders", "send"], from_start=True)
    assert counts["send"]["sent_events"] > 0
    # The run's collections ran at the sync's threshold; the process has its own back afterwards.
    assert SYNC_GC_THRESHOLD in during
    assert gc.get_threshold() == before


def test_collecting_less_never_lowers_a_threshold_and_restores_it_after_an_error():
    before = gc.get_threshold()
    try:
        gc.set_threshold(SYNC_GC_THRESHOLD * 2, *before[1:])
        try:
            with collecting_less():
                assert gc.get_threshold()[0] == SYNC_GC_THRESHOLD * 2
                raise RuntimeError("the run failed")
        except RuntimeError:
            pass
        assert gc.get_threshold() == (SYNC_GC_THRESHOLD * 2, *before[1:])
        gc.set_threshold(700, *before[1:])
        with collecting_less():
            assert gc.get_threshold() == (SYNC_GC_THRESHOLD, *before[1:])
        assert gc.get_threshold() == (700, *before[1:])
    finally:
        gc.set_threshold(*before)

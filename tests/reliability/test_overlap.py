"""Overlapping runs (issue 14, item 4): cron and a manual run start together on one state database.
Both finish, every event reaches Klaviyo exactly once, and no state write trips a UNIQUE constraint:
the store-reading steps run in one of them (the other skips them, saying so), the send is shared."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from kl_sync import state as st
from kl_sync.emulator import running_emulator
from kl_sync.state.locks import STORE_LOCK, lock_holder, release_lock, renew_lock, take_lock
from kl_sync.state.migrate import open_state
from tests.dbs import backend_params, fresh_database
from tests.reliability.helpers import accepted_unique_ids, make_store, reference_run, settings_for

KEY = "pk_overlap"
RUNS = 2


@pytest.mark.parametrize("backend", backend_params())
def test_two_syncs_at_once_both_finish_and_send_every_event_once(backend: str, tmp_path: Path) -> None:
    from kl_sync.app.run import run_sync

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=25, seed=14, years=0.5)
    reference = reference_run(store_url, tmp_path)
    with fresh_database(backend, tmp_path) as state_url, \
            running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, state_url, emu.base_url, KEY, chunk_size=50, send_batch_size=100)
        open_state(state_url).dispose()  # the schema exists: the runs overlap in their work, not in migrating
        start = threading.Barrier(RUNS)
        outcomes: list[Any] = [None] * RUNS

        def one_run(index: int) -> None:
            start.wait()
            try:
                outcomes[index] = run_sync(settings)
            except BaseException as exc:  # the test reports it below, with the other run's outcome
                outcomes[index] = exc

        threads = [threading.Thread(target=one_run, args=(i,)) for i in range(RUNS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        assert errors == []
        events = [e["unique_id"] for e in emu.events()]
        accepted = accepted_unique_ids(emu.journal())

    assert sorted(events) == sorted(reference["events"])  # every event, once
    assert {uid: n for uid, n in accepted.items() if n > 1} == {}  # and never posted twice
    skipped = [o for o in outcomes if any("skipped" in c for c in o.values() if isinstance(c, dict))]
    assert len(skipped) <= RUNS - 1  # at least one run read the store


def test_the_store_lock_is_one_runs_until_its_heartbeat_is_stale(state_url: str) -> None:
    engine = open_state(state_url)
    hour = dt.timedelta(hours=1)
    assert take_lock(engine, STORE_LOCK, "run-a", stale_after=hour) is None
    holder = take_lock(engine, STORE_LOCK, "run-b", stale_after=hour)
    assert holder is not None and holder.run_id == "run-a"
    assert take_lock(engine, STORE_LOCK, "run-a", stale_after=hour) is None  # its own: taken again
    assert renew_lock(engine, STORE_LOCK, "run-a")
    # run-a stops beating (killed): once its heartbeat is older than the limit, run-b takes over.
    assert take_lock(engine, STORE_LOCK, "run-b", stale_after=dt.timedelta(0)) is None
    assert not renew_lock(engine, STORE_LOCK, "run-a")
    release_lock(engine, STORE_LOCK, "run-a")  # not its lock any more: nothing happens
    assert lock_holder(engine, STORE_LOCK).run_id == "run-b"
    release_lock(engine, STORE_LOCK, "run-b")
    assert lock_holder(engine, STORE_LOCK) is None


def test_a_run_skips_the_store_steps_another_live_run_holds_and_still_sends(tmp_path: Path, emulator, capsys) -> None:
    from kl_sync.app.run import run_sync

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=5, seed=3, years=0.2)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem("log:1", "log_event", {
            "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": "log:1",
            "properties": {}, "profile": {"email": "overlap@example.com"}, "backfill": True})])
    assert take_lock(engine, STORE_LOCK, "the-other-run", stale_after=dt.timedelta(hours=1)) is None
    settings = settings_for(store_url, state_url, emulator.base_url, "pk_test_key")
    counts = run_sync(settings, steps=["parse", "orders", "send"])
    line = capsys.readouterr().err.strip()
    assert line.startswith("kl-sync: store steps skipped: run the-other-run holds the store lock since ")
    assert line.endswith(" UTC") and "\n" not in line
    assert (counts["parse"]["rows_read"], counts["orders"]["rows_read"], counts["send"]["sent_events"]) == (0, 0, 1)
    assert [e["unique_id"] for e in emulator.events()] == ["log:1"]
    assert lock_holder(engine, STORE_LOCK).run_id == "the-other-run"  # its lock, untouched


def test_order_states_and_cursors_only_move_forward(state_url: str) -> None:
    engine = open_state(state_url)
    now = st.utcnow()

    def order(status: str, final_key: str | None = None) -> dict[str, Any]:
        return {"order_id": 7, "customer_id": 1, "status": status, "total": 12.5, "placed_key": "order:7:placed",
                "final_key": final_key, "updated_at": now}

    with engine.begin() as conn:
        st.record_states(conn, [order("Cancelled", "order:7:cancelled")], [])
    with engine.begin() as conn:  # another run, which read the order before the first committed
        st.record_states(conn, [order("Placed")], [])
        st.record_states(conn, [], [order("Completed", "order:7:fulfilled")])
    with engine.connect() as conn:
        assert st.known_states(conn, [7]) == {7: "Cancelled"}
    with engine.begin() as conn:
        st.set_cursor(conn, "system_log", [8])
        st.set_cursor(conn, "system_log", [5])
        st.set_cursor(conn, "orders", [dt.datetime(2026, 1, 2, 3, 4, 5, 1), 9])
    with engine.begin() as conn:
        st.set_cursor(conn, "orders", [dt.datetime(2026, 1, 2, 3, 4, 5), 12])  # an earlier time, a larger id
    with engine.connect() as conn:
        assert st.get_cursor(conn, "system_log") == [8]
        assert st.get_cursor(conn, "orders") == ["2026-01-02T03:04:05.000001", 9]
    with engine.begin() as conn:
        st.set_cursor(conn, "system_log", [9])
    with engine.connect() as conn:
        assert st.get_cursor(conn, "system_log") == [9]

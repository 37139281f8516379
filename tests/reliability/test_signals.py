"""Signals (issue 14, item 6): SIGTERM or SIGINT in the middle of a send stops claiming, lets the
request in flight be answered and recorded, hands back every row not sent, records the run
``interrupted`` and exits 143 / 130 with one line; an immediate rerun sends everything. A run killed
outright (SIGKILL) is recorded ``abandoned`` by the next run once its heartbeat is a lease old."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from kl_sync import state as st
from kl_sync.emulator import running_emulator
from kl_sync.state.locks import STORE_LOCK, lock_holder, take_lock
from kl_sync.state.migrate import open_state
from kl_sync.state.outbox import leased_count
from kl_sync.state.tables import outbox, runs
from kl_sync.pipeline import abandon_dead
from kl_sync.settings import load_settings
from tests.reliability.helpers import BULK_EVENTS, child_env, kl_sync_command, run_kl_sync

KEY = "pk_signals"
ROWS = 3000


def _event(n: int) -> st.OutboxItem:
    key = f"log:{n}"
    return st.OutboxItem(key, "log_event", {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": key,
        "properties": {"n": n}, "profile": {"email": f"signal-{n % 50}@example.com"}, "backfill": True,
    })


def _statuses(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(runs.c.status).order_by(runs.c.started_at)).scalars())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_send_hands_every_unsent_row_back(signum: int, code: int, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event(n) for n in range(ROWS)])
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        env = child_env(KL_SYNC_STATE_URL=state_url, KLAVIYO_BASE_URL=emu.base_url, KLAVIYO_API_KEY=KEY,
                        KL_SYNC_SEND_BATCH_SIZE="200", KL_SYNC_SEND_IN_FLIGHT="1")
        # The second bulk request answers slowly: the signal lands while it is in flight.
        emu.fail_next(BULK_EVENTS, "slow", count=2, slow_seconds=3)
        process = subprocess.Popen(kl_sync_command("sync", "--no-prefect", "--steps", "send"), env=env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while process.poll() is None and not any(line["path"] == BULK_EVENTS for line in emu.journal()) \
                and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        lines = stderr.strip().splitlines()
        assert process.returncode == code, stderr
        assert len(lines) == 1 and lines[0].startswith(f"kl-sync: interrupted by {signal.Signals(signum).name}: ")
        sent_before = len(emu.events())
        with engine.connect() as conn:
            assert leased_count(conn) == 0
            assert st.pending_count(conn) == ROWS - sent_before > 0  # what was answered is recorded
        assert _statuses(engine) == ["interrupted"]

        rerun = run_kl_sync("sync", "--no-prefect", "--steps", "send", env=env, cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        shown = [e["unique_id"] for e in emu.events()]
    assert sorted(shown) == sorted(f"log:{n}" for n in range(ROWS))
    assert _statuses(engine) == ["interrupted", "ok"]


def test_a_run_whose_heartbeat_stopped_is_recorded_abandoned_and_frees_what_it_held(tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    settings = load_settings(state_url=state_url, lease_seconds=60)
    with engine.begin() as conn:
        st.enqueue(conn, [_event(n) for n in range(5)])
        dead = st.start_run(conn, steps=["parse", "send"])
        alive = st.start_run(conn, steps=["send"])
    st.claim(engine, limit=3, lease_seconds=3600, owner=dead)
    assert take_lock(engine, STORE_LOCK, dead, stale_after=dt.timedelta(hours=1)) is None
    with engine.begin() as conn:  # the first run was SIGKILLed 61 s ago; the second beats
        conn.execute(update(runs).where(runs.c.id == dead).values(heartbeat_at=st.utcnow() - dt.timedelta(seconds=61)))
    assert abandon_dead(engine, settings) == [dead]
    with engine.connect() as conn:
        found = {r.id: r.status for r in conn.execute(select(runs.c.id, runs.c.status))}
        assert found == {dead: "abandoned", alive: "running"}
        assert leased_count(conn) == 0
    assert lock_holder(engine, STORE_LOCK) is None
    assert abandon_dead(engine, settings) == []


def test_a_signal_inside_a_state_transaction_lets_it_commit_and_stops_the_run_after_it(tmp_path: Path) -> None:
    # Two signals arrive while the parse step's first chunk is being written (inside its transaction):
    # raising there used to leave the transaction open, holding SQLite's write lock, and the run hung
    # recording itself interrupted. The run now stops at its next stop point: after that commit.
    from sqlalchemy import Engine, event, text

    from kl_sync.db import make_engine

    from kl_sync.failures import Failure
    from kl_sync.pipeline import Interruption, run_pipeline
    from tests.reliability.helpers import make_store

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=6, seed=3, years=0.5)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = load_settings(store_url=store_url, state_url=state_url, chunk_size=20)
    interruption = Interruption()
    seen: list[str] = []

    def signal_mid_transaction(conn, cursor, statement, *args) -> None:  # noqa: ANN001 (SQLAlchemy's hook)
        if statement.startswith("INSERT INTO outbox") and not seen:
            seen.append(statement)
            interruption(signal.SIGTERM)  # what the handler does when SIGTERM lands here
            interruption(signal.SIGTERM)  # and a second one (the operator insists): still not here

    event.listen(Engine, "before_cursor_execute", signal_mid_transaction)
    try:
        with pytest.raises(Failure) as stopped:
            run_pipeline(settings, open_client=None, steps=["parse"], interruption=interruption)
    finally:
        event.remove(Engine, "before_cursor_execute", signal_mid_transaction)
    assert stopped.value.exit_code == 143 and str(stopped.value).startswith("interrupted by SIGTERM: ")
    engine = open_state(state_url)
    with engine.connect() as conn:
        cursors = {c["stream"]: c["value"] for c in st.all_cursors(conn)}
        queued = [int(key.split(":")[1]) for key in conn.execute(select(outbox.c.key)).scalars()]
        assert leased_count(conn) == 0
    with make_engine(store_url).connect() as conn:
        last_log_id = conn.execute(text("SELECT max(id) FROM system_log")).scalar_one()
    # The chunk the signal landed in is committed whole (its rows queued, the cursor past them), and
    # the run stopped there: one chunk of at most 20 rows, the rest of the log left for the next run.
    assert seen and list(cursors) == ["system_log"]
    (cursor_id,) = json.loads(cursors["system_log"])
    assert 0 < len(queued) <= 20 and max(queued) <= cursor_id < last_log_id
    assert _statuses(engine) == ["interrupted"]


def test_a_signal_during_an_outage_stops_the_run_at_once(tmp_path: Path, emulator) -> None:
    # Klaviyo answers 503 to the key check: the client would try 6 times, waiting up to ~15 s in all
    # between them. A real SIGTERM after the first answer lands outside any database call, so it
    # stops the run there (it waited out every attempt when signals waited for the stop points).
    import os
    import threading

    from kl_sync.app.run import run_sync
    from kl_sync.failures import Failure
    from kl_sync.retry import REQUEST_RETRIES

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = load_settings(state_url=state_url, klaviyo_base_url=emulator.base_url, klaviyo_api_key="pk_test_key")
    emulator.fail_next("/api/profiles", 503, count=REQUEST_RETRIES.attempts)

    def signal_after_the_first_answer() -> None:
        deadline = time.time() + 60
        while not any(line["path"] == "/api/profiles" for line in emulator.journal()) and time.time() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, by run_sync's handler

    signaller = threading.Thread(target=signal_after_the_first_answer)
    signaller.start()
    with pytest.raises(Failure) as stopped:
        run_sync(settings, steps=["send"])
    signaller.join()
    assert stopped.value.exit_code == 143 and str(stopped.value).startswith("interrupted by SIGTERM: ")
    tries = sum(line["path"] == "/api/profiles" for line in emulator.journal())
    assert 1 <= tries < REQUEST_RETRIES.attempts
    assert _statuses(open_state(state_url)) == ["interrupted"]


def test_ctrl_c_while_the_flow_s_sender_drains_the_outbox_stops_it_at_its_next_batch(tmp_path: Path) -> None:
    """The Prefect flow's run has no signal handler of kl-sync's: Ctrl-C (or a cancellation) is raised
    in the thread that waits for the sender, once the store steps are done. It must stop the sender,
    which otherwise drains the whole outbox first, and leave nothing leased."""
    import os
    import threading

    from kl_sync import pipeline
    from kl_sync.app.clients import klaviyo_client
    from tests.reliability.helpers import make_store

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=20, seed=5, years=0.2)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    queued = [_event(10_000_000 + n) for n in range(ROWS)]  # ids far past the store's own log rows
    with open_state(state_url).begin() as conn:
        st.enqueue(conn, queued)
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,), latency=0.2) as emu:
        settings = load_settings(store_url=store_url, state_url=state_url, klaviyo_base_url=emu.base_url,
                                 klaviyo_api_key=KEY, send_batch_size=100, send_in_flight=1)
        run = pipeline.start_sync(settings, from_start=True)  # as flows/common.py's start_run: no Interruption
        assert run.interruption is None
        # Ctrl-C a second after the first request was answered: the store steps (a small store) are done.
        def interrupt() -> None:
            deadline = time.time() + 60
            while not emu.events() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Python's own handler raises KeyboardInterrupt

        threading.Thread(target=interrupt, daemon=True).start()
        started = time.monotonic()
        with klaviyo_client(settings) as client, pytest.raises(KeyboardInterrupt):
            pipeline.send_while_reading(run, client, ["parse", "orders", "customers", "suppress"])
        stopped_in = time.monotonic() - started
        pipeline.finish_sync(run, error=RuntimeError("interrupted"), status="interrupted")
        sent = {e["unique_id"] for e in emu.events()}
    with open_state(state_url).connect() as conn:
        assert leased_count(conn) == 0
        assert 0 < len(sent & {item.key for item in queued}) < ROWS
    assert stopped_in < 15, stopped_in  # all 3,000 rows, 100 a request, take 30 requests and more

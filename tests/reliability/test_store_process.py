"""The store-reading steps in a process of their own (issue 19, :mod:`kl_sync.store_process`): the run
delivers what the in-process steps deliver, a step failing there fails the run with its error, and
the process never outlives its run, whether the run is signalled, killed, or the process itself is."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from kl_sync.app.run import run_sync
from kl_sync.emulator import running_emulator
from kl_sync.state.migrate import open_state
from kl_sync.state.outbox import leased_count, pending_count
from kl_sync.state.tables import outbox, runs
from kl_sync.store_process import StoreProcessError, _portable, in_memory
from tests.reliability.helpers import child_env, event_facts, kl_sync_command, make_store, run_kl_sync, settings_for

KEY = "pk_store_process"
EVENT_KINDS = ("log_event", "order_event", "ordered_product")


def _store_processes(pid: int | None = None) -> list[int]:
    """The store-reading processes ``pid`` (default: this process) started (Linux: /proc)."""
    found = []
    for task in Path(f"/proc/{pid or os.getpid()}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                if b"kl_sync.store_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:
                pass
    return found


def _store_process_of(pid: int, timeout: float = 30) -> int | None:
    """The store-reading process of the run ``pid`` once it started (None if the run ended first)."""
    deadline = time.time() + timeout
    while time.time() < deadline and Path(f"/proc/{pid}").exists():
        found = _store_processes(pid)
        if found:
            return found[0]
        time.sleep(0.02)
    return None


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if status == "Z":
            return True
        time.sleep(0.05)
    return False


def test_the_store_steps_in_their_own_process_deliver_what_they_deliver_in_the_run_s(tmp_path: Path) -> None:
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=30, seed=19, years=0.5)
    outcomes = {}
    for store_process in (True, False):
        with running_emulator(tmp_path / f"emulator-{store_process}", api_keys=(KEY,)) as emu:
            settings = settings_for(store_url, f"sqlite:///{tmp_path / f'state-{store_process}.db'}", emu.base_url, KEY,
                                    store_process=store_process, chunk_size=100)
            counts = run_sync(settings, from_start=True)
            outcomes[store_process] = counts, event_facts(emu.events())
    (apart, events_apart), (together, events_together) = outcomes[True], outcomes[False]
    assert events_apart == events_together and len(events_apart) > 300
    for step in ("parse", "orders", "customers", "suppress"):
        assert {k: apart[step][k] for k in ("rows_read", "queued", "dead_letters", "by_metric")} == \
               {k: together[step][k] for k in ("rows_read", "queued", "dead_letters", "by_metric")}, step
    assert apart["store_process"]["pid"] != os.getpid() and apart["store_process"]["peak_rss_mb"] > 20
    assert "store_process" not in together
    assert _store_processes() == []


def test_a_step_failing_in_the_store_process_fails_the_run_with_its_error(tmp_path: Path) -> None:
    store_path = tmp_path / "store.db"
    store_url = make_store(f"sqlite:///{store_path}", customers=20, seed=3, years=0.3)
    with sqlite3.connect(store_path) as db:  # parse reads its rows; orders then finds no table
        db.execute("DROP TABLE order_items")
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY)
        with pytest.raises(Exception, match="no such table: order_items"):
            run_sync(settings, from_start=True)
    state = open_state(settings.state_url)
    with state.connect() as conn:
        assert list(conn.execute(select(runs.c.status)).scalars()) == ["failed"]
        assert leased_count(conn) == 0  # what the sender had claimed and not sent went back
    assert _store_processes() == []


def _reading_run(tmp_path: Path, emu, seed: int) -> tuple[subprocess.Popen, int, dict[str, str], str]:
    """A ``kl-sync sync`` of a store read 10 rows a chunk, once its store process has started: the
    run, that process's pid, the run's environment and its state URL."""
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=150, seed=seed, years=1.0)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    env = child_env(KL_SYNC_STORE_URL=store_url, KL_SYNC_STATE_URL=state_url, KLAVIYO_BASE_URL=emu.base_url,
                    KLAVIYO_API_KEY=KEY, KL_SYNC_CHUNK_SIZE="10")
    process = subprocess.Popen(kl_sync_command("sync", "--no-prefect"), env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reader = _store_process_of(process.pid)
    assert reader is not None, process.communicate()[1]
    return process, reader, env, state_url


@pytest.mark.parametrize(("whom", "after"), [("run", 0.5), ("store process", 0.5), ("store process", 0.0)],
                         ids=["the run", "the store process", "the store process as it starts"])
def test_sigterm_stops_the_store_process_with_the_run(whom: str, after: float, tmp_path: Path) -> None:
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        process, reader, env, state_url = _reading_run(tmp_path, emu, seed=7)
        time.sleep(after)  # inside its steps, or still importing kl_sync
        os.kill(process.pid if whom == "run" else reader, signal.SIGTERM)
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 143, stderr
        assert stderr.strip().count("\n") == 0 and "interrupted by SIGTERM" in stderr, stderr
        assert _gone(reader)
        state = open_state(state_url)
        with state.connect() as conn:
            assert list(conn.execute(select(runs.c.status)).scalars()) == ["interrupted"]
            assert leased_count(conn) == 0
        again = run_kl_sync("sync", "--no-prefect", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        # Its summary table has a row per step, none for the store process (it ran in one).
        assert "│ parse" in again.stdout and "store_process" not in again.stdout, again.stdout
        with state.connect() as conn:
            assert pending_count(conn) == 0


def test_a_killed_run_leaves_no_store_process(tmp_path: Path) -> None:
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=150, seed=8, years=1.0)
    env = child_env(KL_SYNC_STORE_URL=store_url, KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
                    KLAVIYO_API_KEY="pk_emulator", KL_SYNC_CHUNK_SIZE="10")
    with running_emulator(tmp_path / "emulator", api_keys=("pk_emulator",)) as emu:
        env["KLAVIYO_BASE_URL"] = emu.base_url
        process = subprocess.Popen(kl_sync_command("sync", "--no-prefect"), env=env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reader = _store_process_of(process.pid)
        assert reader is not None
        process.kill()
        process.wait()
        assert _gone(reader, timeout=5), "the store-reading process outlived its killed run"


def test_in_memory_databases_keep_the_steps_in_the_run_s_process() -> None:
    assert in_memory("sqlite://") and in_memory("sqlite:///:memory:") and in_memory("sqlite+pysqlite:///:memory:")
    assert in_memory("sqlite:///file:state?mode=memory&cache=shared&uri=true")
    assert in_memory("sqlite:///file::memory:?cache=shared&uri=true") and in_memory("sqlite:///:memory:?cache=shared")
    assert not in_memory("sqlite:///file:state.db?uri=true")
    assert not in_memory("sqlite:///state.db") and not in_memory("sqlite:////tmp/state.db")
    assert not in_memory("postgresql://postgres@127.0.0.1:5432/test")


class _Unpicklable(Exception):
    def __init__(self, line: str, extra: object) -> None:
        super().__init__(line)
        self.extra = extra


def test_an_error_that_does_not_survive_pickling_still_reaches_the_run_with_its_line() -> None:
    from kl_sync.failures import Failure, failure_of

    failure = Failure("KL_SYNC_STORE_URL: cannot connect", exit_code=2)
    assert _portable(failure) is failure and pickle.loads(pickle.dumps(failure)).exit_code == 2
    described = _portable(_Unpicklable("the store went away", extra=lambda: None))
    assert described["line"] == "the store went away" and described["type"].endswith("_Unpicklable")
    assert "Traceback" in described["traceback"] or "_Unpicklable" in described["traceback"]
    assert failure_of(StoreProcessError("the store-reading process ended (killed by SIGKILL)")).exit_code == 1


def test_only_a_run_reading_the_store_from_its_start_loads_gx_before_its_first_claim(tmp_path: Path) -> None:
    from kl_sync.pipeline import _reads_from_the_start, finish_sync, start_sync

    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=5, seed=2, years=0.2)
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, KEY)
        fresh = start_sync(settings)
        assert _reads_from_the_start(fresh)
        finish_sync(fresh)
        run_sync(settings)
        later = start_sync(settings)  # nothing new, or a little: GX loads on the first validation, if any
        assert not _reads_from_the_start(later)
        finish_sync(later)
        again = start_sync(settings, from_start=True)
        assert _reads_from_the_start(again)
        finish_sync(again)


def test_a_store_process_killed_on_its_own_fails_the_run_in_one_line_and_loses_nothing(tmp_path: Path) -> None:
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,)) as emu:
        process, reader, env, state_url = _reading_run(tmp_path, emu, seed=9)
        time.sleep(0.5)
        os.kill(reader, signal.SIGKILL)  # the OOM killer, say: a chunk it was writing rolls back
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 1, stderr
        assert stderr.strip().splitlines() == [
            "kl-sync: the store-reading process ended (killed by SIGKILL) before its steps were done"], stderr
        state = open_state(state_url)
        with state.connect() as conn:
            assert list(conn.execute(select(runs.c.status)).scalars()) == ["failed"]
            assert leased_count(conn) == 0
        again = run_kl_sync("sync", "--no-prefect", "--json", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        with state.connect() as conn:
            assert pending_count(conn) == 0
        ids = [e["unique_id"] for e in emu.events()]
        with state.connect() as conn:
            queued = set(conn.execute(select(outbox.c.key).where(outbox.c.kind.in_(EVENT_KINDS))).scalars())
        assert len(ids) == len(set(ids)) and set(ids) == queued and len(queued) > 1000  # every event, once

"""1. Kill anywhere: a real ``kl-sync sync`` process gets SIGKILL, SIGTERM or SIGINT at many random
moments, then one ordinary rerun (waiting at most one lease period) completes it. Every expected
event reaches the emulator exactly once, no outbox row is left pending or under a lease, no run is
left ``running`` and no process the killed runs started outlives them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from kl_sync.state.tables import runs

from kl_sync.db import make_engine
from kl_sync.emulator import FaultSpec, running_emulator
from kl_sync import state as st
from kl_sync.state.tables import PENDING, outbox
from tests.reliability.helpers import (
    BULK_EVENTS,
    accepted_unique_ids,
    child_env,
    dead_letter_keys,
    event_facts,
    kl_sync_command,
    make_store,
    reference_run,
    run_kl_sync,
)

SEED = 20261127
KILLS = 9
#: The signals a run may get, and the exit code each must end with when it lands mid-run.
SIGNALS = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 143, signal.SIGINT: 130}
KEY = "pk_kill_test"
LEASE_SECONDS = 5


def _progress(state_url: str) -> tuple[bool, int]:
    """(whether the state database exists with cursors, how many outbox rows are finished)."""
    engine = make_engine(state_url)
    if not inspect(engine).has_table("cursors"):
        return False, 0
    with engine.connect() as conn:
        cursors = bool(st.all_cursors(conn))
        done = conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status != PENDING)).scalar_one()
    return cursors, done


def _runs(state_url: str) -> int:
    engine = make_engine(state_url)
    if not inspect(engine).has_table("runs"):
        return 0
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(runs)).scalar_one()


def _phase(before: tuple[bool, int], after: tuple[bool, int], pending: int) -> str:
    """Where the killed run was, read from what it had committed."""
    if not after[0]:
        return "start-up"
    if after[1] > before[1]:
        return "between send batches" if pending else "after the last send batch"
    if not before[0]:
        return "parse/orders/suppress"
    return "after start-up, before a send batch committed"


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (Linux: /proc), to check none outlives it."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_signals_and_kills_at_random_moments_lose_and_double_nothing(tmp_path: Path, record_property) -> None:
    rng = random.Random(SEED)
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=40, seed=7, years=0.5)
    reference = reference_run(store_url, tmp_path)
    assert len(reference["events"]) > 500

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    # A few requests answer slowly (so kills land mid-request) or land and then lose their answer.
    faults = FaultSpec(rate=0.3, mix={"slow": 3, "drop_after_commit": 1}, seed=SEED, slow_seconds=0.5)
    with running_emulator(tmp_path / "emulator", api_keys=(KEY,), faults=faults) as emu:
        env = child_env(
            KL_SYNC_STORE_URL=store_url, KL_SYNC_STATE_URL=state_url, KLAVIYO_BASE_URL=emu.base_url,
            KLAVIYO_API_KEY=KEY, KL_SYNC_CHUNK_SIZE="100", KL_SYNC_SEND_BATCH_SIZE="100",
            KL_SYNC_LEASE_SECONDS=str(LEASE_SECONDS),
        )
        command = kl_sync_command("sync", "--no-prefect", "--from-start")
        kills: list[dict[str, object]] = []
        children: set[int] = set()
        hung: list[str] = []
        completed = 0
        for attempt in range(KILLS):
            before = _progress(state_url)
            runs_before = _runs(state_url)
            started = time.time()
            process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # A third of the kills at a random moment of start-up, parse, orders and suppress; the rest
            # at a random moment after this run's first request reached Klaviyo (importing the quality
            # suites takes most of a run's first seconds, so a plain random delay would rarely get there).
            slowed = False
            if rng.random() < 0.35:
                delay = rng.uniform(1.0, 3.5)
            else:
                delay = rng.uniform(0.0, 2.5)
                slowed = rng.random() < 0.5
                if slowed:
                    # This run's next requests answer slowly, so the kill likely lands inside one.
                    emu.fail_next(BULK_EVENTS, "slow", count=3, slow_seconds=1.5)
                while process.poll() is None and not any(line["ts"] >= started for line in emu.journal()):
                    time.sleep(0.05)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                journal_before = len(emu.journal())
                signum = rng.choice(list(SIGNALS))
                children.update(_children(process.pid))
                process.send_signal(signum)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    # A signalled run that does not stop fails the test (at its end): it is killed, so
                    # that everything below is still checked and reported with it.
                    hung.append(signal.Signals(signum).name)
                    process.kill()
                    process.wait()
                stderr = process.stderr.read().decode()
                stopped_itself = process.returncode != -signal.SIGKILL
                if signum != signal.SIGKILL and stopped_itself and process.returncode != 0 and _runs(state_url) > runs_before:
                    # A run that had started stops cleanly: its code, and one line (the run
                    # interrupted, nothing left leased). Before that, Python's own handling applies.
                    assert process.returncode == SIGNALS[signum], stderr
                    assert len(stderr.strip().splitlines()) == 1 and "interrupted by" in stderr, stderr
                time.sleep(1.7 if slowed else 0.7)  # let a request that was in flight reach the journal
                after = _progress(state_url)
                pending = len(reference["events"]) - after[1]
                kills.append({"after": round(delay, 2), "phase": _phase(before, after, pending),
                              "mid_request": len(emu.journal()) > journal_before,
                              "signal": signal.Signals(signum).name})
            else:
                assert process.returncode == 0, process.stderr.read().decode()
                completed += 1
            process.stderr.close()
            # Later runs go on from the cursors; the seventh re-reads everything once more, which must
            # be as harmless as a crash.
            command = kl_sync_command("sync", "--no-prefect", *(["--from-start"] if attempt == 5 else []))

        # Rows a SIGKILLed run had leased come back once the lease runs out: at most one lease on.
        state = make_engine(state_url)
        with state.connect() as conn:
            leased_until = conn.execute(select(func.max(outbox.c.lease_expires_at))).scalar()
        if leased_until is not None:
            wait = (leased_until - st.utcnow()).total_seconds()
            assert wait <= LEASE_SECONDS
            time.sleep(max(0.0, wait) + 0.2)
        final = run_kl_sync("sync", "--no-prefect", "--json", env=env, cwd=tmp_path)
        assert final.returncode == 0, final.stderr

        events = emu.events()
        accepted = accepted_unique_ids(emu.journal())

    ids = [e["unique_id"] for e in events]
    doubled = sorted(uid for uid in set(ids) if ids.count(uid) > 1) if len(ids) != len(set(ids)) else []
    lost = sorted(set(reference["events"]) - set(ids))
    assert doubled == [] and lost == []
    assert event_facts(events) == reference["events"]  # same events, same facts, nothing extra
    assert set(accepted) == set(reference["events"])

    with state.connect() as conn:
        pending = conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status == PENDING)).scalar_one()
        leased = conn.execute(select(func.count()).select_from(outbox).where(outbox.c.lease_owner.is_not(None))).scalar_one()
        assert (pending, leased, st.stuck_leases(conn)) == (0, 0, 0)
        statuses = dict(conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all())
    assert "running" not in statuses, statuses
    assert [pid for pid in children if _alive(pid)] == []
    assert dead_letter_keys(state_url) == reference["dead_letters"]

    figures = {
        "kill points tried": len(kills), "runs that finished before their kill": completed,
        "kills by phase": {p: sum(k["phase"] == p for k in kills) for p in {k["phase"] for k in kills}},
        "kills mid-request": sum(bool(k["mid_request"]) for k in kills),
        "kills by signal": {n: sum(k["signal"] == n for k in kills) for n in {k["signal"] for k in kills}},
        "runs by outcome": statuses,
        "expected events": len(reference["events"]), "events lost": len(lost), "events doubled": len(doubled),
        "events sent again and deduplicated by unique_id": sum(n - 1 for n in accepted.values()),
    }
    record_property("figures", json.dumps(figures))
    print(json.dumps(figures, indent=2))
    assert len(kills) >= KILLS // 2, figures  # most runs really were killed
    # A signalled run stops at its next stop point (Interruption): it used to hang about 1 in 8 times,
    # when the signal raised inside a state transaction that then kept SQLite's write lock.
    assert hung == [], f"signalled runs hung (killed after 60 s): {', '.join(hung)}"


def _temporary_prefect_server(process: subprocess.Popen) -> tuple[int, int] | None:
    """(pid, port) of the uvicorn serving Prefect's API that ``process`` started, once it answers."""
    for pid in _children(process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in command and b"prefect.server.api.server:create_app" in command:
            port = int(command[command.index(b"--port") + 1])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as answer:
                    return (pid, port) if answer.status == 200 else None
            except OSError:
                return None
    return None


def test_a_killed_prefect_run_leaves_no_prefect_server(tmp_path: Path, emulator) -> None:
    """``kl-sync sync --prefect`` SIGKILLed while its temporary Prefect server serves the run: the
    server dies with it (it used to outlive every killed run, ~200 MB each)."""
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=5, seed=3, years=0.2)
    env = child_env(KL_SYNC_STORE_URL=store_url, KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
                    KLAVIYO_BASE_URL=emulator.base_url, KLAVIYO_API_KEY="pk_test_key")
    env.pop("PREFECT_API_URL", None)  # the temporary server, not one the developer runs
    process = subprocess.Popen(kl_sync_command("sync", "--prefect"), env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = None
    try:
        # A generous bound for a fresh Prefect database's migration on a busy machine, not a speed check.
        deadline = time.monotonic() + 180
        while server is None and process.poll() is None and time.monotonic() < deadline:
            server = _temporary_prefect_server(process)
            time.sleep(0.2)
        assert server is not None and process.poll() is None, process.stderr.read().decode() if process.poll() is not None else "no server"
        process.kill()
        process.wait()
        # It gets SIGTERM from the kernel; shutting down may take it a moment.
        deadline = time.monotonic() + 30
        while _alive(server[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server[0]), f"the temporary Prefect server (pid {server[0]}, port {server[1]}) outlived its run"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
        if server is not None and _alive(server[0]):
            os.kill(server[0], signal.SIGKILL)  # this test's orphan, not the next test's problem

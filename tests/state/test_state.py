import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from kl_sync.app.cli import main
from kl_sync.db import make_engine
from kl_sync import state as st
from kl_sync.state.migrate import current_revision, downgrade, head_revision, open_state, upgrade
from kl_sync.state.outbox import UndecodablePayload
from kl_sync.state.tables import metadata, outbox


def test_migrations_create_the_schema_the_code_uses(state_url):
    engine = open_state(state_url)
    assert current_revision(engine) == head_revision()
    assert {"cursors", "outbox", "order_state", "dead_letters", "runs"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    # Starting again is a no-op; going down and up again works.
    assert upgrade(engine) == head_revision()
    assert downgrade(engine, "base") is None
    assert "outbox" not in inspect(engine).get_table_names()
    assert upgrade(engine) == head_revision()


def test_cli_db_upgrade(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    assert main(["db", "current", "--url", url]) == 0
    out = capsys.readouterr().out
    assert f"current: {head_revision()}" in out


def _items(n, kind="log_event", start=0):
    return [st.OutboxItem(f"log:{i}", kind, {"metric": "m", "unique_id": f"log:{i}", "n": i}) for i in range(start, start + n)]


def test_outbox_enqueue_is_idempotent_and_cursor_moves_with_it(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        assert len(st.enqueue(conn, _items(5))) == 5
        st.set_cursor(conn, "system_log", [5])
    with engine.begin() as conn:
        assert st.enqueue(conn, _items(8)) == {"log:5", "log:6", "log:7"}  # 0..4 are already queued
        st.set_cursor(conn, "system_log", [8])
        assert st.get_cursor(conn, "system_log") == [8]
    # A crash before commit leaves neither the rows nor the cursor.
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            st.enqueue(conn, _items(2, start=100))
            st.set_cursor(conn, "system_log", [102])
            raise RuntimeError("killed")
    with engine.connect() as conn:
        assert st.get_cursor(conn, "system_log") == [8]
        assert st.existing_keys(conn, ["log:100", "log:7"]) == {"log:7"}
        stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)
    with engine.begin() as conn:
        st.set_cursor(conn, "orders", [stamp, 9])
    with engine.connect() as conn:
        value = st.get_cursor(conn, "orders")
        assert st.parse_cursor_datetime(value[0]) == stamp and value[1] == 9


def test_claims_are_disjoint_and_leases_expire(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(10))
    first = st.claim(engine, limit=4, lease_seconds=60, owner="a")
    second = st.claim(engine, limit=100, lease_seconds=60, owner="b")
    assert [c.key for c in first] == [f"log:{i}" for i in range(4)]
    assert {c.key for c in second} == {f"log:{i}" for i in range(4, 10)}
    assert st.claim(engine, limit=100, lease_seconds=60) == []
    # A worker that died holding a lease: after expiry its rows are claimable again.
    later = st.utcnow() + dt.timedelta(seconds=61)
    with engine.connect() as conn:
        assert st.stuck_leases(conn, later) == 10
    again = st.claim(engine, limit=100, lease_seconds=60, now=later)
    assert len(again) == 10


def test_sent_retry_dead_and_replay(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(3))
    a, b, c = st.claim(engine, limit=3, lease_seconds=60)
    soon = st.utcnow() + dt.timedelta(minutes=5)
    with engine.begin() as conn:
        st.mark_sent(conn, [a.id], run_id="r1")
        st.mark_retry(conn, b.id, attempts=1, error="503 from Klaviyo", next_attempt_at=soon)
        st.mark_dead(conn, c, step="send", reason="400: email is invalid at /data/...", run_id="r1")
    assert st.claim(engine, limit=10, lease_seconds=60) == []  # b waits for its next attempt
    retried = st.claim(engine, limit=10, lease_seconds=60, now=soon)
    assert [r.key for r in retried] == [b.key] and retried[0].attempts == 1
    with engine.begin() as conn:
        st.release(conn, [retried[0].id])
    with engine.connect() as conn:
        letters = st.list_dead_letters(conn)
        assert [(d["key"], d["step"]) for d in letters] == [(c.key, "send")]
        assert "email is invalid" in letters[0]["reason"]
        status = dict(conn.execute(select(outbox.c.key, outbox.c.status)).all())
        assert status == {a.key: "sent", b.key: "pending", c.key: "dead"}
    with engine.begin() as conn:
        assert st.revive_dead(conn, [a.key, b.key, c.key]) == [c.key]  # only the dead row
    assert c.key in {r.key for r in st.claim(engine, limit=10, lease_seconds=60, now=soon)}


def test_run_history(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        run_id = st.start_run(conn, steps=["parse", "send"])
    with engine.begin() as conn:
        st.finish_run(conn, run_id, status="ok", counts={"events_sent": 3})
    with engine.connect() as conn:
        (run,) = st.recent_runs(conn)
    assert run["status"] == "ok" and run["counts"] == {"events_sent": 3} and run["finished_at"] is not None


def test_large_payloads_fit(state_url):
    engine = open_state(state_url)
    big = {"metric": "m", "message": "x" * 300_000}
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem("log:big", "log_event", big)])
    (item,) = st.claim(engine, limit=1, lease_seconds=60)
    assert item.payload == big


def test_the_verify_migration_reads_metric_and_time_from_rows_already_there(state_url):
    import sqlalchemy as sa

    engine = make_engine(state_url)
    upgrade(engine, "0003")
    now = dt.datetime(2026, 12, 1, 8, 0)
    # The outbox as revision 0003 has it (no delivery columns).
    old = sa.table("outbox", *(sa.column(name) for name in (
        "key", "kind", "payload", "status", "attempts", "next_attempt_at", "created_at", "sent_at")))
    rows = [("log:1", "log_event", {"metric": "shipping.email", "time": "2024-05-15T12:35:32-04:00"}, "sent"),
            ("log:2", "log_event", {"metric": "cancelled", "time": "not a time"}, "pending"),
            ("suppress:a@example.com", "suppression", {"email": "a@example.com"}, "sent")]
    with engine.begin() as conn:
        conn.execute(sa.insert(old), [
            {"key": key, "kind": kind, "payload": st.dumps(payload), "status": status, "attempts": 0,
             "next_attempt_at": now, "created_at": now, "sent_at": now if status == "sent" else None}
            for key, kind, payload, status in rows])
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        found = {r.key: (r.metric, r.event_time, r.sends) for r in conn.execute(
            select(outbox.c.key, outbox.c.metric, outbox.c.event_time, outbox.c.sends))}
    assert found == {"log:1": ("shipping.email", dt.datetime(2024, 5, 15, 16, 35, 32), 1),
                     "log:2": ("cancelled", None, 0), "suppress:a@example.com": (None, None, 1)}


def test_delivery_records_only_what_this_verification_saw(state_url):
    from kl_sync.state import delivery

    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(3))
    claimed = st.claim(engine, limit=3, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_sent(conn, [c.id for c in claimed])
    later = st.utcnow() + dt.timedelta(seconds=1)
    with engine.connect() as conn:
        first, second, third = delivery.due_for_verification(conn, sent_before=later, kinds=["log_event"])
    assert (first.key, first.metric, first.sends) == ("log:0", "m", 1)
    # Another verification re-sent the second row meanwhile: this one's stale view leaves it alone.
    with engine.begin() as conn:
        assert delivery.requeue_missing(conn, [second]) == [second.id]
    (again,) = st.claim(engine, limit=3, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_sent(conn, [again.id])
        assert delivery.requeue_missing(conn, [second]) == []
        assert delivery.mark_delivered(conn, [first.key]) == 1
        assert delivery.mark_delivered(conn, [first.key]) == 0  # delivered once
        delivery.mark_missing(conn, [third.id])
    with engine.connect() as conn:
        (row,) = delivery.delivery_counts(conn)
        assert row == {"kind": "log_event", "metric": "m", "queued": 0, "sent": 1, "verified": 1, "missing": 1,
                       "dead": 0}
        sends = dict(conn.execute(select(outbox.c.key, outbox.c.sends)).all())
    assert sends == {"log:0": 1, "log:1": 2, "log:2": 1}


def test_the_head_read_from_the_migration_files_is_alembics():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from kl_sync.state.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_state_transactions_run_at_read_committed_on_every_server(server: str, tmp_path) -> None:
    # InnoDB's default REPEATABLE READ gap-locked the outbox's claim index, and two overlapping runs
    # deadlocked (1213) on it: MySQL / MariaDB state runs at PostgreSQL's default instead. (SQLite
    # serialises its writers: it has no isolation level to choose.)
    from sqlalchemy import text

    from tests.dbs import fresh_database

    query = {"postgresql": "SHOW transaction_isolation", "mysql": "SELECT @@tx_isolation"}[server]
    with fresh_database(server, tmp_path) as state_url:
        engine = open_state(state_url)
        with engine.connect() as conn:
            assert conn.execute(text(query)).scalar_one().replace("-", " ").lower() == "read committed"
        engine.dispose()


def test_runs_starting_together_on_a_fresh_sqlite_state_all_open_it(tmp_path) -> None:
    # Cron and a manual run on a new machine: both used to create alembic_version ("table
    # alembic_version already exists"), or the second failed to switch the new file to WAL
    # ("database is locked"). One migrates; the others wait for it and find the state at head.
    import threading

    for trial, url in enumerate([f"sqlite:///{tmp_path / 'state0.db'}", f"sqlite:///{tmp_path / 'state1.db'}",
                                 f"sqlite:///file:{tmp_path / 'state2.db'}?uri=true"]):
        start = threading.Barrier(3)
        errors: list[str] = []

        def one_start() -> None:
            start.wait()
            try:
                open_state(url).dispose()
            except Exception as exc:  # reported below, with the others'
                errors.append(repr(exc))

        threads = [threading.Thread(target=one_start) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert current_revision(make_engine(url)) == head_revision()


def test_a_run_waiting_too_long_for_another_runs_migration_says_so_in_one_line(tmp_path, monkeypatch) -> None:
    import fcntl

    from kl_sync.state import migrate

    monkeypatch.setattr(migrate, "SQLITE_MIGRATION_WAIT", 0.3)
    path = tmp_path / "state.db"
    with open(f"{path}.lock", "a") as other_run:  # another run, creating the state, holds the lock
        fcntl.flock(other_run, fcntl.LOCK_EX)
        with pytest.raises(migrate.MigrationBusy) as busy:
            open_state(f"sqlite:///{path}")
    assert busy.value.exit_code == 2 and "\n" not in str(busy.value)
    assert str(busy.value).startswith(f"KL_SYNC_STATE_URL: another run has been creating or upgrading {path} for 0 s")
    open_state(f"sqlite:///{path}").dispose()  # the other run done, the next start migrates
    assert current_revision(make_engine(f"sqlite:///{path}")) == head_revision()



def test_a_claim_decodes_its_payloads_after_its_commit(tmp_path, monkeypatch):
    """On SQLite the write lock is held to a transaction's commit: a claim that decoded its 20,000
    payloads inside it held up the recording of the answers in flight, and so the next posts (benchmark
    8). Each payload is decoded once the claim has committed: another writer could take the lock then."""
    import sqlite3

    from kl_sync.state import codec
    from kl_sync.state import outbox as outbox_module

    path = tmp_path / "state.db"
    engine = open_state(f"sqlite:///{path}")
    with engine.begin() as conn:
        st.enqueue(conn, _items(3))
    lock_free_while_decoding = []

    def loads(text):
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # a writer's lock: refused while another transaction writes
            other.execute("ROLLBACK")
            lock_free_while_decoding.append(True)
        except sqlite3.OperationalError:
            lock_free_while_decoding.append(False)
        finally:
            other.close()
        return codec.loads(text)

    monkeypatch.setattr(outbox_module, "loads", loads)
    claimed = st.claim(engine, limit=10, lease_seconds=60, owner="a")
    assert [c.key for c in claimed] == ["log:0", "log:1", "log:2"] and all(c.payload for c in claimed)
    assert lock_free_while_decoding == [True, True, True]


def test_a_claim_keeps_a_payload_it_cannot_decode_as_stored(state_url):
    """A payload edited by hand into text that is not JSON: the claim still returns the row, its
    payload the stored text and why it cannot be decoded (the sender makes it a dead letter), so one
    such row cannot stop every claim."""
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(3))
        conn.execute(outbox.update().where(outbox.c.key == "log:1").values(payload="{not json"))
    first, bad, last = st.claim(engine, limit=10, lease_seconds=60, owner="a")
    assert isinstance(first.payload, dict) and isinstance(last.payload, dict)
    assert isinstance(bad.payload, UndecodablePayload) and bad.payload.text == "{not json"
    assert bad.payload.reason.startswith("JSONDecodeError: ")


def test_a_claim_stopped_while_decoding_leases_nothing(state_url, monkeypatch):
    """Stopped while decoding (a signal raises there): the claim leases nothing, as when the decoding
    rolled its transaction back; the rows are claimable at once."""
    from kl_sync.state import codec
    from kl_sync.state import outbox as outbox_module
    from kl_sync.state.outbox import leased_count

    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(3))
    decoded = []

    def loads(text):
        if decoded:
            raise KeyboardInterrupt
        decoded.append(text)
        return codec.loads(text)

    monkeypatch.setattr(outbox_module, "loads", loads)
    with pytest.raises(KeyboardInterrupt):
        st.claim(engine, limit=10, lease_seconds=60, owner="a")
    with engine.connect() as conn:
        assert leased_count(conn) == 0
    monkeypatch.undo()
    assert len(st.claim(engine, limit=10, lease_seconds=60, owner="b")) == 3


def test_a_claim_reads_only_the_rows_it_takes_on_sqlite(tmp_path):
    """A claim's statements, as SQLite plans them: none reads the whole outbox, nor sorts every due row
    to keep the first ones. Over ``(status, next_attempt_at)`` the candidates were every due pending
    row, sorted (a temporary B-tree), and the claimed rows were found by their token alone (a scan of
    the outbox): ~0.2 s of each 20,000-row claim at 217,000 pending rows, growing with the queue
    (benchmark 8). A plan is the query planner's, not a timing: the same on any machine."""
    from sqlalchemy import event

    engine = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    with engine.begin() as conn:
        st.enqueue(conn, _items(50))
    first = st.claim(engine, limit=10, lease_seconds=60, owner="a")
    with engine.begin() as conn:
        st.mark_sent(conn, [item.id for item in first[:5]])
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    claimed = st.claim(engine, limit=20, lease_seconds=60, owner="b")
    event.remove(engine, "before_cursor_execute", seen)
    assert [c.key for c in claimed] == [f"log:{i}" for i in range(10, 30)]
    plans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
                rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                plans.append((statement.split()[0], [row[-1] for row in rows]))
    assert len(plans) == 3, plans  # the candidates, the lease, the leased rows
    for verb, steps in plans:
        assert not any(step.startswith("SCAN outbox") or "TEMP B-TREE" in step for step in steps), (verb, steps)
    assert any("ix_outbox_queue" in step for step in plans[0][1]), plans[0]


def test_with_payload_is_replace_of_the_payload_alone():
    """``ClaimedItem.with_payload`` builds the tuple by position (a third of ``_replace``'s cost): a
    field added or moved must be added to it too, or this fails."""
    item = st.ClaimedItem(*(f"field {n}" for n in range(len(st.ClaimedItem._fields))))
    assert item.with_payload({"a": 1}) == item._replace(payload={"a": 1})
    assert type(item.with_payload(None)) is st.ClaimedItem


def test_a_claim_spanning_another_claims_rows_takes_only_its_own(state_url):
    """The claim reads its rows back by their ids' range and its token: rows handed back from the
    middle of another worker's claim put that worker's rows inside the range. They stay its own."""
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, _items(30))
    first = st.claim(engine, limit=10, lease_seconds=60, owner="a")
    handed_back = [first[2], first[5]]
    with engine.begin() as conn:
        assert st.release(conn, [item.id for item in handed_back], lease=first[0].lease) == 2
    second = st.claim(engine, limit=100, lease_seconds=60, owner="b")
    assert [c.key for c in second] == ["log:2", "log:5"] + [f"log:{i}" for i in range(10, 30)]
    assert len({c.lease for c in second}) == 1 and second[0].lease != first[0].lease
    kept = [item for item in first if item not in handed_back]
    with engine.begin() as conn:  # the first claim still holds the rest: it can mark them sent
        assert st.mark_sent(conn, [item.id for item in kept], lease=first[0].lease) == len(kept)

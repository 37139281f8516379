"""A dead letter's way: open, replayed, resolved when its key is delivered (whatever sent it), or
discarded by a person; on every state backend."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import select

from kl_sync import state as st
from kl_sync.state import delivery
from kl_sync.state.dead_letters import (
    DISCARDED,
    OPEN,
    REPLAYED,
    RESOLVED,
    Selection,
    letter_counts,
    letters_by_reason,
    mark_replayed,
    rebuilds,
    reason_pattern,
    resolved_by_runs,
    unit_of,
)
from kl_sync.state.migrate import MIGRATIONS, downgrade, head_revision, open_state, upgrade
from kl_sync.state.tables import dead_letters, outbox


def _event(key):
    return st.OutboxItem(key, "log_event", {"metric": "m", "unique_id": key, "time": "2026-10-01T10:00:00+00:00"})


def _letters(engine):
    with engine.connect() as conn:
        return {row.key: row for row in conn.execute(select(dead_letters).order_by(dead_letters.c.id))}


def _send(engine, keys, run_id="send-run", unverifiable=()):
    """Claim and mark sent the rows with ``keys``, as the sender does on a 2xx."""
    every = st.claim(engine, limit=100, lease_seconds=60)
    claimed = [c for c in every if c.key in keys]
    with engine.begin() as conn:
        st.release(conn, [c.id for c in every if c.key not in keys])
        st.mark_sent(conn, [c.id for c in claimed], run_id=run_id)
        delivery.record_accepted(conn, [c.key for c in claimed], unverifiable=set(unverifiable), run_id=run_id)
    return claimed


def test_unit_of_names_the_store_row_a_key_was_built_from():
    assert unit_of("order:5:item:7") == "order:5" and unit_of("order:5:placed") == "order:5"
    assert unit_of("profile:3:2026-01-02T03:04:05:suppress:a@b.c") == "profile:3"
    assert unit_of("log:6") == "log:6" and unit_of("suppress:a@b.c") == "suppress:a@b.c"


def test_a_rejected_row_is_open_then_replayed_then_resolved_once_verified(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event("log:1"), _event("log:2")])
    first, second = st.claim(engine, limit=10, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_dead(conn, first, step="quality", reason="failed data-quality expectations: status", run_id="r1")
        st.release(conn, [second.id])
    assert _letters(engine)["log:1"].status == OPEN

    with engine.begin() as conn:
        assert delivery.revive_dead(conn, ["log:1", "log:2"]) == ["log:1"]
        assert mark_replayed(conn, ["log:1"], run_id="replay-run") == 1
    letter = _letters(engine)["log:1"]
    assert (letter.status, letter.replayed_run_id, letter.resent_at) == (REPLAYED, "replay-run", None)
    assert letter.replayed_at is not None

    # Klaviyo accepts it: a 2xx is no proof, the letter only notes the re-send.
    _send(engine, {"log:1", "log:2"})
    letter = _letters(engine)["log:1"]
    assert letter.status == REPLAYED and letter.resent_at is not None

    with engine.begin() as conn:
        assert delivery.mark_delivered(conn, ["log:1", "log:2"], run_id="verify-run") == 2
    letter = _letters(engine)["log:1"]
    assert (letter.status, letter.resolved_run_id) == (RESOLVED, "verify-run") and letter.resolved_at is not None
    with engine.connect() as conn:
        assert resolved_by_runs(conn, ["verify-run", "send-run"]) == {"verify-run": 1}
        assert letter_counts(conn) == {OPEN: 0, REPLAYED: 0, RESOLVED: 1, DISCARDED: 0}
        assert st.list_dead_letters(conn) == []


def test_a_letter_resolves_when_a_later_sync_delivers_its_key_without_a_replay(state_url):
    """A parse letter (the row never became a payload): the row fixed and re-read, its event
    delivered, the letter closes by itself."""
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.add_dead_letter(conn, key="log:6", step="parse", kind="log_event", reason="customer 3 has a malformed "
                           "e-mail 'x@'", original={"id": 6})
        st.enqueue(conn, [_event("log:6")])
    _send(engine, {"log:6"})
    assert _letters(engine)["log:6"].status == OPEN  # sent is not delivered
    with engine.begin() as conn:
        delivery.mark_delivered(conn, ["log:6"], run_id="run-2")
    assert _letters(engine)["log:6"].status == RESOLVED


def test_an_order_letter_resolves_only_by_a_row_rebuilt_after_it(state_url):
    """``order:5`` (the order could not be built) is the unit of ``order:5:placed``: a row of it
    queued before the letter proves nothing; one queued after it (the order rebuilt) does."""
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event("order:5:placed"), _event("order:50:placed")])
    _send(engine, {"order:5:placed", "order:50:placed"})
    with engine.begin() as conn:
        st.add_dead_letter(conn, key="order:5", step="orders", kind="order_event",
                           reason="order 5: customer 3 has no e-mail", original={"id": 5})
    with engine.begin() as conn:
        delivery.mark_delivered(conn, ["order:5:placed", "order:50:placed"])
    assert _letters(engine)["order:5"].status == OPEN
    with engine.begin() as conn:
        st.enqueue(conn, [_event("order:5:cancelled")])
    _send(engine, {"order:5:cancelled"})
    with engine.begin() as conn:
        delivery.mark_delivered(conn, ["order:5:cancelled"], run_id="r")
    assert _letters(engine)["order:5"].status == RESOLVED


def test_a_kind_nothing_reads_back_resolves_when_klaviyo_accepts_it(state_url):
    engine = open_state(state_url)
    key = "profile:3:2026-01-02T03:04:05"
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem(key, "profile", {"email": "a@example.com"})])
        st.add_dead_letter(conn, key="profile:3", step="customers", kind="profile",
                           reason="customer 3 has a malformed e-mail 'a@'", original={"id": 3})
        st.add_dead_letter(conn, key=key, step="send", kind="profile", reason="rejected by Klaviyo", original={})
    _send(engine, {key}, run_id="run-9", unverifiable={key})
    letters = _letters(engine)
    assert letters[key].status == RESOLVED and letters[key].resolved_run_id == "run-9"
    # The profile row was queued before the customers letter: it cannot prove the customer fixed.
    assert letters["profile:3"].status == OPEN


def test_a_person_discards_letters_with_a_note_and_delivery_leaves_them(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        for i in range(3):
            st.add_dead_letter(conn, key=f"log:{i}", step="parse", kind="log_event",
                               reason=f"log {i}: no customer and no usable e-mail", original={"id": i})
        st.add_dead_letter(conn, key="log:9", step="quality", kind="log_event",
                           reason="failed data-quality expectations: status", original={})
    with engine.begin() as conn:
        chosen = st.discard_letters(conn, Selection(reason="NO USABLE"), note="test rows of the shop")
    assert sorted(letter["key"] for letter in chosen) == ["log:0", "log:1", "log:2"]
    letters = _letters(engine)
    assert (letters["log:1"].status, letters["log:1"].note) == (DISCARDED, "test rows of the shop")
    assert letters["log:9"].status == OPEN
    with engine.begin() as conn:
        st.enqueue(conn, [_event("log:1")])
    _send(engine, {"log:1"})
    with engine.begin() as conn:
        delivery.mark_delivered(conn, ["log:1"])
    assert _letters(engine)["log:1"].status == DISCARDED
    with engine.connect() as conn:
        (summary,) = letters_by_reason(conn)
    assert (summary["letters"], summary["example"]) == (1, "log:9")


def test_letters_are_summed_up_by_the_pattern_of_their_reason(state_url):
    """1,271 letters are a few lines: the rows a reason names (ids, quoted values) set aside."""
    engine = open_state(state_url)
    with engine.begin() as conn:
        for i in range(1, 6):
            st.add_dead_letter(conn, key=f"log:{i}", step="parse", kind="log_event",
                               reason=f"log {i}: customer {i * 10} has a malformed e-mail 'x{i}@'", original={})
        st.add_dead_letter(conn, key="log:9", step="quality", kind="log_event",
                           reason="failed data-quality expectations: expect_column_values_to_be_in_set(status)",
                           original={})
    with engine.connect() as conn:
        malformed, paused = letters_by_reason(conn)
        only = letters_by_reason(conn, Selection(step="quality"))
    assert malformed["reason"] == "log N: customer N has a malformed e-mail '…'" == reason_pattern(
        "log 6: customer 3 has a malformed e-mail 'not-an-email'")
    assert (malformed["letters"], malformed["example"], paused["letters"]) == (5, "log:5", 1)
    assert malformed["first_seen"] <= malformed["last_seen"]
    assert [entry["example"] for entry in only] == ["log:9"]


def test_the_migration_carries_letters_over(state_url):
    """Before 0009 a replayed letter had only ``replayed_at``; one whose key is verified since is resolved."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = open_state(state_url)
    downgrade(engine, ScriptDirectory.from_config(config).get_revision("0009_dead_letters").down_revision)
    old = sa.table("dead_letters", sa.column("key"), sa.column("step"), sa.column("reason"),
                   sa.column("created_at"), sa.column("replayed_at"))
    now = dt.datetime(2026, 12, 1, 10, 0, 0)
    with engine.begin() as conn:
        st.enqueue(conn, [_event("log:1"), _event("log:2")])
        conn.execute(sa.update(outbox).where(outbox.c.key == "log:1").values(status="verified", verified_at=now))
        conn.execute(sa.insert(old), [
            {"key": "log:1", "step": "send", "reason": "r", "created_at": now, "replayed_at": now},
            {"key": "log:2", "step": "send", "reason": "r", "created_at": now, "replayed_at": now},
            {"key": "log:3", "step": "parse", "reason": "r", "created_at": now, "replayed_at": None},
        ])
    assert upgrade(engine) == head_revision()
    letters = _letters(engine)
    assert {key: row.status for key, row in letters.items()} == {"log:1": RESOLVED, "log:2": REPLAYED, "log:3": OPEN}
    assert letters["log:1"].resolved_at == now


def test_a_profile_letter_resolves_when_a_later_change_of_the_customer_is_delivered(state_url):
    """A profile carries the customer's CURRENT attributes: the profile of their next change (the row
    fixed) settles the letter of the previous one; another customer's or an older one does not."""
    engine = open_state(state_url)
    old, new, other = "profile:3:2026-01-02T03:04:05", "profile:3:2026-01-03T09:00:00.250000", "profile:31:2026-01-04T00:00:00"
    with engine.begin() as conn:
        st.add_dead_letter(conn, key=old, step="quality", kind="profile",
                           reason="failed data-quality expectations: expect_column_values_to_be_in_set(status)",
                           original={})
        st.enqueue(conn, [st.OutboxItem(k, "profile", {"email": "a@example.com"}) for k in (new, other)])
    _send(engine, {other}, unverifiable={other})
    assert _letters(engine)[old].status == OPEN
    _send(engine, {new}, unverifiable={new})
    assert _letters(engine)[old].status == RESOLVED
    assert rebuilds(old, new) and not rebuilds(old, other) and not rebuilds(old, f"{new}:suppress:a@example.com")


def test_a_re_read_revives_a_dead_key_from_the_start_or_when_its_row_changed(state_url):
    engine = open_state(state_url)
    with engine.begin() as conn:
        st.enqueue(conn, [_event("log:1"), _event("log:2")])
    dead, sent = st.claim(engine, limit=10, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_dead(conn, dead, step="quality", reason="failed data-quality expectations: status")
        st.mark_sent(conn, [sent.id])
    same = [_event("log:1"), _event("log:2")]
    changed = st.OutboxItem("log:1", "log_event", {**same[0].payload, "profile": {"email": "fixed@example.com"}})
    with engine.begin() as conn:
        # A lookback meeting the same rows: an unchanged dead row would fail the same way again.
        assert delivery.requeue_rebuilt(conn, same, changed_only=True) == set()
        assert delivery.requeue_rebuilt(conn, [changed, same[1]], changed_only=True, run_id="r2") == {"log:1"}
    assert _letters(engine)["log:1"].status == REPLAYED and _letters(engine)["log:1"].replayed_run_id == "r2"
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(outbox))}
    assert rows["log:1"].status == "pending" and "fixed@example.com" in rows["log:1"].payload
    assert rows["log:2"].status == "sent"  # never sent twice
    (again,) = st.claim(engine, limit=10, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_dead(conn, again, step="quality", reason="failed data-quality expectations: status")
        # From the start, a dead key is rebuilt whatever: the suite may have changed, not the row.
        assert delivery.requeue_rebuilt(conn, [changed], changed_only=False) == {"log:1"}


def test_a_dead_row_queued_in_the_older_text_is_not_a_changed_row(state_url):
    """A dead row whose payload was written by the standard library (``1e-05``) against the same
    payload built again, now written as orjson writes it (``0.00001``): the same values, so a
    lookback does not revive it; a changed value still does."""
    from kl_sync.state.codec import encode_payload

    payload = {"metric": "m", "unique_id": "log:1", "time": "2026-10-01T10:00:00+00:00", "properties": {"f": 1e-05}}
    engine = open_state(state_url)
    with engine.begin() as conn:
        conn.execute(outbox.insert().values(key="log:1", kind="log_event", status="pending", attempts=0,
                                            payload='{"metric":"m","properties":{"f":1e-05},"time":"2026-10-01T10:00:00+00:00","unique_id":"log:1"}',
                                            created_at=dt.datetime(2026, 10, 1), next_attempt_at=dt.datetime(2026, 10, 1)))
    (dead,) = st.claim(engine, limit=10, lease_seconds=60)
    with engine.begin() as conn:
        st.mark_dead(conn, dead, step="quality", reason="failed data-quality expectations: status")
    rebuilt = st.OutboxItem("log:1", "log_event", None, encode_payload(payload), None)
    assert "0.00001" in rebuilt.stored_text
    changed = st.OutboxItem("log:1", "log_event", {**payload, "properties": {"f": 2e-05}})
    with engine.begin() as conn:
        assert delivery.requeue_rebuilt(conn, [rebuilt], changed_only=True) == set()
        assert delivery.requeue_rebuilt(conn, [changed], changed_only=True) == {"log:1"}


def test_a_value_fixed_to_an_equal_number_of_another_type_is_a_changed_row(state_url):
    """``true`` fixed to ``1`` and ``1.0`` to ``1`` are equal in Python but not the same JSON: the fixed
    row is revived."""
    engine = open_state(state_url)
    base = {"metric": "m", "time": "2026-10-01T10:00:00+00:00"}
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem("log:1", "log_event", {**base, "unique_id": "log:1", "value": True}),
                          st.OutboxItem("log:2", "log_event", {**base, "unique_id": "log:2", "value": 1.0})])
    with engine.begin() as conn:
        for item in st.claim(engine, limit=10, lease_seconds=60):
            st.mark_dead(conn, item, step="quality", reason="failed data-quality expectations: value")
    fixed = [st.OutboxItem("log:1", "log_event", {**base, "unique_id": "log:1", "value": 1}),
             st.OutboxItem("log:2", "log_event", {**base, "unique_id": "log:2", "value": 1})]
    with engine.begin() as conn:
        assert delivery.requeue_rebuilt(conn, fixed, changed_only=True) == {"log:1", "log:2"}

"""The sender against the emulator over real HTTP, on every state backend."""

import datetime as dt
import json
from collections import Counter

import pytest
from sqlalchemy import select

from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.errors import AuthError
from kl_sync.settings import load_settings
from kl_sync import state as st
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.orders import process_orders
from kl_sync.steps.parse import parse_log
from kl_sync.steps import send as send_step
from kl_sync.steps.send import quality_validator, send_outbox
from kl_sync.steps.suppress import suppress_touched
from kl_sync.store.generate import generate_store
from kl_sync.db import make_engine
from kl_sync.kinds import metric_names

END = dt.datetime(2026, 11, 1, 12, 0)


def _statuses(state):
    with state.connect() as conn:
        return Counter(conn.execute(select(outbox.c.status)).scalars())


def test_generated_store_reaches_klaviyo_exactly_once(store_url, state_url, emulator):
    store = make_engine(store_url)
    generate_store(store, customers_count=40, seed=5, end=END)
    state = open_state(state_url)
    settings = load_settings()
    parse = parse_log(store, state, settings)
    orders = process_orders(store, state, settings)
    suppress = suppress_touched(store, state, settings)
    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    sent = send_outbox(state, client, batch_size=700, validate=quality_validator(metric_names(settings)))
    queued_events = parse.queued + orders.queued
    assert sent.details["sent_events"] == queued_events, sent
    assert sent.details["sent_suppressions"] == suppress.queued
    assert _statuses(state) == {"sent": queued_events + suppress.queued}

    events = emulator.events()
    assert len(events) == queued_events
    assert len({e["unique_id"] for e in events}) == queued_events
    with state.connect() as conn:
        expected = {r.key for r in conn.execute(select(outbox.c.key).where(outbox.c.kind != "suppression"))}
    assert {e["unique_id"] for e in events} == expected
    assert {s["email"] for s in emulator.suppressions()} == {
        k.removeprefix("suppress:") for k in st.existing_keys(state.connect(), list(_suppress_keys(state)))
    }

    # A second run, and an initial sync over the synced account, add nothing.
    for from_start in (False, True):
        assert parse_log(store, state, settings, from_start=from_start).queued == 0
        assert process_orders(store, state, settings, from_start=from_start).queued == 0
        assert send_outbox(state, client).rows_read == 0
    assert len(emulator.events()) == queued_events


def _suppress_keys(state):
    with state.connect() as conn:
        return conn.execute(select(outbox.c.key).where(outbox.c.kind == "suppression")).scalars().all()


def _event(i, email=None, **extra):
    payload = {
        "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": f"log:{i}",
        "properties": {"n": i}, "profile": {"email": email or f"p{i}@example.com"}, "backfill": True,
    }
    payload.update(extra)
    return st.OutboxItem(f"log:{i}", "log_event", payload)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_rejected_item_dead_letters_alone(state_url, emulator):
    state = open_state(state_url)
    items = [_event(i) for i in range(10)]
    # Passes our checks (no validator here) but Klaviyo refuses it: its time is not a time.
    items[4] = _event(4, time="yesterday-ish")
    with state.begin() as conn:
        st.enqueue(conn, items)
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), run_id="r")
    assert result.details["sent_events"] == 9 and result.dead_letters == 1
    assert sorted(e["unique_id"] for e in emulator.events()) == sorted(f"log:{i}" for i in range(10) if i != 4)
    with state.connect() as conn:
        (letter,) = st.list_dead_letters(conn)
    assert letter["key"] == "log:4" and letter["step"] == "send" and "time" in letter["reason"]
    # The rest of the batch was rebuilt, and the letter written, from the rows' stored text (a built
    # call keeps no decoded payload); the counts come from each call's metrics.
    assert json.loads(letter["original"]) == items[4].payload
    assert result.by_metric == {"shipping.email": 9}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_built_batch_keeps_its_rows_as_stored_not_decoded(state_url):
    """Decoded, a payload takes ~4x its stored text, and two batches are alive at once (the one sent,
    the one prepared ahead): once its bodies are built a batch keeps each row's text, and what the
    client may read again (a partly rejected batch's rebuild) is decoded from it."""
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(2500)])
    batch = send_step._prepare_batch(state, batch_size=5000, lease_seconds=60, owner="test", validate=None,
                                     run_id=None)
    kept = [item for call in batch.calls for item in call.items]
    assert len(kept) == len(batch.claimed) == 2500 and [len(call.items) for call in batch.calls] == [1000, 1000, 500]
    queued = {f"log:{i}": _event(i).payload for i in range(2500)}
    assert all(item.payload is None and json.loads(item.text) == queued[item.key] for item in kept + batch.claimed)
    call = batch.calls[1]
    inputs = call.send.args[1]  # functools.partial(_send_built, send, inputs, batches)
    assert len(inputs) == 1000
    assert inputs[7] == call.operation.input_of(queued[call.items[7].key])
    assert inputs[998:] == [call.operation.input_of(queued[item.key]) for item in call.items[998:]]
    assert call.metrics == ("shipping.email",) * 1000


@pytest.mark.parametrize("backend", ["sqlite"])
def test_quality_failures_never_leave(state_url, emulator):
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(1), _event(2, email="not-an-email")])
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url),
                         validate=quality_validator({"log_event": {"shipping.email"}}))
    assert result.details["sent_events"] == 1 and result.details["quality_rejects"] == 1
    assert [e["unique_id"] for e in emulator.events()] == ["log:1"]
    with state.connect() as conn:
        (letter,) = st.list_dead_letters(conn)
    assert letter["step"] == "quality" and "email" in letter["reason"]
    assert json.loads(letter["original"]) == _event(2, email="not-an-email").payload


@pytest.mark.parametrize("profile", ["p2@example.com", {"email": 5}, {"email": ["p2@example.com"]}])
@pytest.mark.parametrize("validated", [True, False])
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_payload_of_a_shape_no_body_can_take_is_a_dead_letter_and_the_rest_is_sent(state_url, emulator, validated,
                                                                                   profile):
    """Its profile is not an object, or its e-mail not text: the events' order (by profile e-mail)
    cannot be read from it, and its suite fails it (or, unvalidated, its body cannot be built, or
    Klaviyo refuses it). The other rows go."""
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(1), _event(2, profile=profile), _event(3)])
    validate = quality_validator({"log_event": {"shipping.email"}}) if validated else None
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), validate=validate)
    assert result.details["sent_events"] == 2 and result.dead_letters == 1
    assert sorted(e["unique_id"] for e in emulator.events()) == ["log:1", "log:3"]
    with state.connect() as conn:
        (letter,) = st.list_dead_letters(conn)
    assert letter["key"] == "log:2" and letter["step"] == ("quality" if validated else "send")
    assert json.loads(letter["original"])["profile"] == profile


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_validator_that_reads_none_of_its_rows_still_lets_the_batch_be_ordered_and_sent(state_url, emulator):
    """The sender takes each row's order key as the validator reads it; a validator that reads none
    (a stand-in passing everything) leaves the keys to be taken as the calls are built."""
    from types import SimpleNamespace

    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i, email=f"p{9 - i}@example.com") for i in range(10)])
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url),
                         validate=lambda kind, rows: SimpleNamespace(rows=0, failures={}, by_expectation={}))
    assert result.details["sent_events"] == 10 and result.dead_letters == 0 and "quality" not in result.details
    assert _statuses(state) == {"sent": 10}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_sender_decodes_a_batch_row_by_row_as_the_suite_reads_it(state_url, emulator):
    """A claim of the sender keeps its rows as stored; each payload is decoded as its suite reads it
    and dropped after, so a batch's payloads (~4x their text) are never all decoded at once."""
    import gc

    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(600)])
    suite = quality_validator({"log_event": {"shipping.email"}})
    decoded_at: list[int] = []

    def decoded_payloads() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is dict and "profile" in o and "properties" in o)

    def validate(kind, rows):
        def counted():
            for n, row in enumerate(rows):
                if n in (0, 300, 599):
                    decoded_at.append(decoded_payloads())
                yield row
        return suite(kind, counted())

    before = decoded_payloads()  # what else is alive (other tests' leftovers): not this batch's
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), validate=validate)
    assert result.details["sent_events"] == 600 and len(emulator.events()) == 600
    # The row being read, and the one before it: before, the whole batch (600).
    assert len(decoded_at) == 3 and max(decoded_at) - before <= 3, (before, decoded_at)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_auth_error_stops_and_leaves_everything_pending(state_url, emulator):
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(5)])
    with pytest.raises(AuthError):
        send_outbox(state, KlaviyoClient("pk_wrong_key", emulator.base_url))
    assert _statuses(state) == {"pending": 5}
    with state.connect() as conn:
        assert st.stuck_leases(conn) == 0
        assert conn.execute(select(outbox.c.attempts).distinct()).scalars().all() == [0]
    assert emulator.events() == []
    # With the right key the same rows go out at once: nothing was leased away.
    assert send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url)).details["sent_events"] == 5


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_auth_error_also_hands_back_the_batch_prepared_ahead(state_url, emulator):
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(2500)])
    # Batches of 1,000: the first is being sent when the 401 comes, the second was claimed ahead.
    with pytest.raises(AuthError):
        send_outbox(state, KlaviyoClient("pk_wrong_key", emulator.base_url), batch_size=1000)
    assert _statuses(state) == {"pending": 2500}
    with state.connect() as conn:
        assert conn.execute(select(outbox.c.id).where(outbox.c.lease_owner.is_not(None))).all() == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("batch_size", "batches"), [
    # 1,000 rows, then 10,000 (a burst window's worth): two batches (a ramp of 1,000 and 4,000 took three).
    (20_000, 2),
    # The ramp's 10,000 is over the batch size: 1,000, then batches of 5,000.
    (5000, 3),
])
def test_the_first_batches_ramp_up_to_the_batch_size(state_url, emulator, batch_size, batches):
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(11_000)])
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), batch_size=batch_size)
    assert result.details["batches"] == batches and result.details["sent_events"] == 11_000
    assert sorted(e["unique_id"] for e in emulator.events()) == sorted(f"log:{i}" for i in range(11_000))
    assert _statuses(state) == {"sent": 11_000}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_stored_payload_that_is_not_json_is_a_dead_letter_and_the_rest_is_sent(state_url, emulator):
    """A payload edited by hand in the state database into text that is not JSON: that row becomes a
    dead letter saying so (its text kept as the original), its batch is sent, and the next send has
    nothing left to claim (the row no longer comes first in every claim)."""
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(5)])
        conn.execute(outbox.update().where(outbox.c.key == "log:2").values(payload='{"metric": "shipping.email",'))
    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    result = send_outbox(state, client, batch_size=20_000)
    assert result.details["sent_events"] == 4 and result.dead_letters == 1
    assert result.rows_read == 5  # the bad row counts among the rows the send read
    assert sorted(e["unique_id"] for e in emulator.events()) == ["log:0", "log:1", "log:3", "log:4"]
    assert _statuses(state) == {"sent": 4, "dead": 1}
    with state.connect() as conn:
        (letter,) = st.list_dead_letters(conn)
    assert letter["key"] == "log:2" and letter["step"] == "send"
    assert letter["reason"].startswith("its stored payload is not JSON (JSONDecodeError: ")
    assert json.loads(letter["original"]) == '{"metric": "shipping.email",'  # the text, kept as a JSON string
    again = send_outbox(state, client, batch_size=20_000)
    assert again.details["batches"] == 0 and again.dead_letters == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_batch_of_only_payloads_that_are_not_json_is_counted_and_the_send_goes_on(state_url, emulator):
    """Every row of a batch undecodable: the batch still counts its rows read and its dead letters
    (the run says what happened to them), and the rows after it are sent."""
    state = open_state(state_url)
    with state.begin() as conn:
        st.enqueue(conn, [_event(i) for i in range(3)])
        st.enqueue(conn, [st.OutboxItem("order:9:placed", "order_event", {"unique_id": "order:9:placed"})])
        conn.execute(outbox.update().where(outbox.c.key.in_(["log:0", "order:9:placed"])).values(payload="{"))
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), batch_size=1,
                         validate=quality_validator({"log_event": {"shipping.email"}, "order_event": {"Placed Order"}}))
    assert result.rows_read == 4 and result.dead_letters == 2 and result.details["sent_events"] == 2
    assert sorted(e["unique_id"] for e in emulator.events()) == ["log:1", "log:2"]
    assert _statuses(state) == {"sent": 2, "dead": 2}
    # The suite saw the two rows that decode; a kind none of whose rows decode has no report.
    assert result.details["quality"] == {"log_event": {"rows": 2, "failures": {
        name: 0 for name in result.details["quality"]["log_event"]["failures"]}}}

"""An order is one unit: Klaviyo never gets an order's Ordered Product without its Placed Order, however
the sender's batches, its look-ahead, other workers and retries cut the order's rows apart. Against
the emulator, on every state backend."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from kl_sync import state as st
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.payloads import ORDERED_PRODUCT, PLACED_ORDER
from kl_sync.retry import Retries
from kl_sync.state.codec import utcnow
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.send import send_outbox

BULK = "/api/event-bulk-create-jobs"
LINES = ("order:1:item:11", "order:1:item:12")
#: One HTTP attempt per request: a 503 reaches the sender at once (the client's own retries would
#: only make the test slower).
ONE_TRY = Retries(attempts=1, first_wait=0.0, longest_wait=0.0)


def _event(key: str, kind: str, metric: str, **extra: Any) -> st.OutboxItem:
    payload = {"metric": metric, "time": "2026-10-01T10:00:00+00:00", "unique_id": key, "value": 4.25,
               "properties": {"OrderId": "1"}, "profile": {"email": "buyer@example.com"}, "backfill": True}
    payload.update(extra)
    return st.OutboxItem(key, kind, payload)


def _queue_order(state, *, placed_time: str = "2026-10-01T10:00:00+00:00") -> None:
    """Order 1 (a Placed Order and two lines), then an unrelated log event, in queue order."""
    items = [_event("order:1:placed", "order_event", PLACED_ORDER, time=placed_time),
             *(_event(key, "ordered_product", ORDERED_PRODUCT) for key in LINES),
             _event("log:1", "log_event", "shipping.email")]
    with state.begin() as conn:
        st.enqueue(conn, items)


def _rows(state) -> dict[str, Any]:
    with state.connect() as conn:
        return {row.key: row for row in conn.execute(select(outbox))}


def _letters(state) -> dict[str, dict[str, Any]]:
    with state.connect() as conn:
        return {letter["key"]: letter for letter in st.list_dead_letters(conn)}


def _in_klaviyo(emulator) -> set[str]:
    return {event["unique_id"] for event in emulator.events()}


def _assert_held_whole(state, emulator) -> None:
    assert _in_klaviyo(emulator) == {"log:1"}
    letters = _letters(state)
    assert set(letters) == {"order:1:placed", *LINES}
    for line in LINES:
        assert "held with its order (order:1): order:1:placed is a dead letter" in letters[line]["reason"]


@pytest.mark.parametrize("refusal", ["one item", "whole request"])
def test_lines_prepared_ahead_are_held_when_klaviyo_refuses_their_placed_order(state_url, emulator, refusal):
    """Batches of one row: the lines are claimed and validated in the batches prepared while the
    Placed Order's request is in flight, before Klaviyo answers 400 to it."""
    state = open_state(state_url)
    if refusal == "one item":
        _queue_order(state, placed_time="yesterday-ish")  # the emulator points at that event
    else:
        _queue_order(state)
        emulator.fail_next(BULK, 400)  # a 400 pointing at no item: the whole request
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), batch_size=1, run_id="r")
    _assert_held_whole(state, emulator)
    assert result.details["sent_events"] == 1 and result.dead_letters == 3


def test_a_line_claimed_by_another_worker_waits_for_its_placed_order(state_url, emulator):
    """Worker 1 has claimed the Placed Order (its request on the way); worker 2 claims the lines. They
    must not leave before worker 1's answer; once it is a refusal, they are held with it."""
    state = open_state(state_url)
    _queue_order(state)
    (lead,) = st.claim(state, limit=1, lease_seconds=60, owner="worker-1")
    assert lead.key == "order:1:placed"
    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    second = send_outbox(state, client, owner="worker-2", run_id="r2")
    assert _in_klaviyo(emulator) == {"log:1"}
    assert second.details["waiting_for_order"] == 2
    rows = _rows(state)
    assert {rows[line].status for line in LINES} == {"pending"}
    assert {rows[line].attempts for line in LINES} == {0} and {rows[line].lease_owner for line in LINES} == {None}
    # Worker 1's answer: Klaviyo refused the Placed Order.
    with state.begin() as conn:
        assert st.mark_dead(conn, lead, step="send", reason="rejected by Klaviyo: bad", run_id="r1")
    # The lines wait until worker 1's claim would have lapsed at the latest; then the next send holds them.
    with state.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.key.in_(LINES)).values(next_attempt_at=utcnow()))
    send_outbox(state, client, owner="worker-2", run_id="r3")
    _assert_held_whole(state, emulator)


@pytest.mark.parametrize("batch_size", [1, 100])
def test_lines_wait_with_a_placed_order_due_for_retry_and_die_with_it(state_url, emulator, batch_size):
    """The Placed Order's request gets a 503: it is due again later. Its lines (in a later batch, or
    in the same one) wait with it; when its last send fails too it is a dead letter, and so are they."""
    state = open_state(state_url)
    _queue_order(state)
    client = KlaviyoClient(emulator.api_key, emulator.base_url, retries=ONE_TRY)
    retries = Retries(attempts=2, first_wait=30.0, longest_wait=30.0)
    emulator.fail_next(BULK, 503)
    send_outbox(state, client, batch_size=batch_size, retries=retries, run_id="r1")
    rows = _rows(state)
    placed = rows["order:1:placed"]
    assert placed.status == "pending" and placed.attempts == 1 and placed.next_attempt_at > utcnow()
    assert _in_klaviyo(emulator) == ({"log:1"} if batch_size == 1 else set())
    for line in LINES:
        assert rows[line].status == "pending" and rows[line].next_attempt_at >= placed.next_attempt_at
    # Thirty seconds later: everything due again, and the Placed Order's second (last) send fails too.
    with state.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.status == "pending")
                     .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1)))
    emulator.fail_next(BULK, 503)
    send_outbox(state, client, batch_size=1, retries=retries, run_id="r2")
    assert "gave up after 2 attempts" in _letters(state)["order:1:placed"]["reason"]
    _assert_held_whole(state, emulator)


def test_two_senders_at_once_never_send_a_line_without_its_order(backend, state_url, tmp_path):
    """Two senders drain one outbox together (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB),
    in batches of 7 rows, so orders of 4 rows are cut between batches, look-aheads and workers all
    the time; Klaviyo refuses every fifth Placed Order. Each order ends whole: all of it in Klaviyo,
    or all of it dead letters."""
    from concurrent.futures import ThreadPoolExecutor

    from kl_sync.emulator import running_emulator

    state = open_state(state_url)
    items = []
    for order in range(1, 41):
        lead = f"order:{order}:placed"
        items.append(_event(lead, "order_event", PLACED_ORDER, time="soon" if order % 5 == 0 else "2026-10-01T10:00:00+00:00",
                            profile={"email": f"buyer-{order % 7}@example.com"}))
        items += [_event(f"order:{order}:item:{order * 10 + n}", "ordered_product", ORDERED_PRODUCT,
                         profile={"email": f"buyer-{order % 7}@example.com"}) for n in range(3)]
    with state.begin() as conn:
        st.enqueue(conn, items)
    with running_emulator(tmp_path / "two-senders", api_keys=("pk_two",), latency=0.05) as emu:
        def sender(n: int):
            return send_outbox(state, KlaviyoClient("pk_two", emu.base_url), batch_size=7, in_flight=2,
                               owner=f"worker-{n}", run_id=f"r{n}")

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(sender, (1, 2)))
        # Lines handed back while the other sender held their Placed Order are due again once its claim
        # would have lapsed: move the clock there, and one more send finishes the outbox.
        with state.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.status == "pending").values(next_attempt_at=utcnow()))
        send_outbox(state, KlaviyoClient("pk_two", emu.base_url), batch_size=7, owner="worker-3", run_id="r3")
        in_klaviyo = _in_klaviyo(emu)
    if backend != "sqlite":  # SQLite has no SKIP LOCKED: a claim that lost the race there comes back empty
        assert all(result.details["sent_events"] > 0 for result in results), "one sender drained everything"
    rows = _rows(state)
    assert {row.status for row in rows.values()} == {"sent", "dead"}
    for order in range(1, 41):
        keys = {key for key in rows if key.startswith(f"order:{order}:")}
        if order % 5 == 0:
            assert not keys & in_klaviyo and {rows[key].status for key in keys} == {"dead"}, order
        else:
            assert keys <= in_klaviyo, order


def _posted_unique_ids(emulator) -> list[list[str]]:
    """The unique_ids of each bulk request Klaviyo got, in the order they came."""
    posted = []
    for entry in emulator.journal():
        if entry["method"] == "POST" and entry["path"] == BULK and entry["status"] == 202:
            jobs = entry["body"]["data"]["attributes"]["events-bulk-create"]["data"]
            posted.append([event["attributes"]["unique_id"] for job in jobs
                           for event in job["attributes"]["events"]["data"]])
    return posted


def test_a_batchs_lines_go_after_the_next_batchs_orders(state_url, emulator):
    """Lines posted right after their Placed Order would wait for its answer and hold up every request
    behind them; so a batch's lines go after the next batch's first requests (its Placed Orders), and
    still never before their own Placed Order was accepted."""
    state = open_state(state_url)
    items = []
    for order in (1, 2):
        items += [_event(f"order:{order}:placed", "order_event", PLACED_ORDER),
                  *(_event(f"order:{order}:item:{order}{n}", "ordered_product", ORDERED_PRODUCT) for n in (1, 2))]
    with state.begin() as conn:
        st.enqueue(conn, items)
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), batch_size=3, run_id="r")
    assert result.details["sent_events"] == 6 and result.details["batches"] == 2
    assert _posted_unique_ids(emulator) == [["order:1:placed"], ["order:2:placed"], ["order:1:item:11", "order:1:item:12"],
                                            ["order:2:item:21", "order:2:item:22"]]
    assert {row.status for row in _rows(state).values()} == {"sent"}


def _queue_two_orders(state) -> list[str]:
    """Orders 1 and 2, a Placed Order and two lines each, in queue order; their keys."""
    items = []
    for order in (1, 2):
        items += [_event(f"order:{order}:placed", "order_event", PLACED_ORDER),
                  *(_event(f"order:{order}:item:{order}{n}", "ordered_product", ORDERED_PRODUCT) for n in (1, 2))]
    with state.begin() as conn:
        st.enqueue(conn, items)
    return [item.key for item in items]


def test_the_lines_held_back_go_out_when_the_send_stops_at_max_batches(state_url, emulator):
    state = open_state(state_url)
    keys = _queue_two_orders(state)
    result = send_outbox(state, KlaviyoClient(emulator.api_key, emulator.base_url), batch_size=3, max_batches=1)
    assert result.details["sent_events"] == 3
    assert _posted_unique_ids(emulator) == [["order:1:placed"], ["order:1:item:11", "order:1:item:12"]]
    rows = _rows(state)
    assert [rows[key].status for key in keys] == ["sent"] * 3 + ["pending"] * 3
    assert {rows[key].lease_owner for key in keys} == {None}


def test_an_auth_error_hands_back_the_lines_held_back(state_url, emulator):
    """Order 1's Placed Order is accepted, its lines wait for order 2's first request, which gets a 401:
    every row not sent goes back untouched, and the next send delivers them, lines after their order."""
    from kl_sync.klaviyo.errors import AuthError

    state = open_state(state_url)
    keys = _queue_two_orders(state)
    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    # Faults are drawn in the order queued: order 1's Placed Order answered as usual, the next request refused.
    emulator.fail_next(BULK, "slow", slow_seconds=0.0)
    emulator.fail_next(BULK, 401)
    with pytest.raises(AuthError):
        send_outbox(state, client, batch_size=3)
    rows = _rows(state)
    assert [rows[key].status for key in keys] == ["sent"] + ["pending"] * 5
    assert {rows[key].lease_owner for key in keys} == {None} and {rows[key].attempts for key in keys} == {0}
    assert send_outbox(state, client, batch_size=3).details["sent_events"] == 5
    posted = [key for request in _posted_unique_ids(emulator) for key in request]
    assert sorted(posted) == sorted(keys)
    for order in (1, 2):
        assert all(posted.index(f"order:{order}:placed") < posted.index(f"order:{order}:item:{order}{n}") for n in (1, 2))

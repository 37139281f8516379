"""Log Run: the only code that writes to Klaviyo.

It claims due outbox rows under a lease, validates them against the data-quality suites, sends the
passing ones in bulk through the client, and records per row: sent; retry later (attempts, next
attempt time, backing off); or dead letter with the reason (a failed expectation, Klaviyo's
rejection, or too many attempts). An order's Ordered Products are posted only after Klaviyo accepted its
Placed Order (:func:`_after_leads`). An auth error stops the run and hands every unfinished row back
untouched. Results are committed after every bulk request is answered, so a crash repeats at most
the requests then in flight (``in_flight`` per endpoint) — which Klaviyo dedupes by ``unique_id``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from kl_sync.chunks import chunks
from kl_sync.kinds import EVENTS, OPERATIONS, Operation, kind_of, unit_lead
from kl_sync.retry import OUTBOX_RETRIES, Retries
from kl_sync.state.codec import loads, utcnow
from kl_sync.state.dead_letters import mark_dead
from kl_sync.state.delivery import record_accepted
from kl_sync.state.outbox import (
    ClaimedItem,
    UndecodablePayload,
    claim,
    decode_stored,
    defer,
    lead_states,
    mark_retry,
    mark_sent,
    pending_rows,
    release,
)
from kl_sync.steps.common import StepResult

#: Batches claimed, validated and built ahead of the one being sent. One keeps the sender fed; two
#: measured no faster, as the preparing thread then competes longer with the sending one for the GIL.
PREPARED_AHEAD = 1

#: A line waiting for its order's Placed Order, which no claim holds and which is due (it was handed
#: back a moment ago, or another worker's claim of it is not committed yet), is claimed again no sooner
#: than this: the next claim takes the Placed Order first (queued before its lines), and the lines
#: cannot come round again and again before it.
RECHECK_SECONDS = 1.0

#: (kind, (key, payload) rows) -> a report with ``failures`` ({key: [failed expectation names]}),
#: ``rows`` and ``by_expectation`` ({expectation: failed rows}) — kl_sync.quality.QualityReport. The
#: sender's rows are decoded as they are read (an iterator, read once).
Validator = Callable[[str, Iterable[tuple[str, dict[str, Any]]]], Any]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:40]


def quality_validator(metric_names: Mapping[str, Collection[str]]) -> Validator:
    """The default gate: each kind's GX suite (GX is imported on first use), with the
    metric names each kind may carry."""

    def validate(kind: str, rows: Iterable[tuple[str, dict[str, Any]]]) -> Any:
        from kl_sync.quality import validate_batch

        return validate_batch(kind, rows, metric_names=metric_names.get(kind, ()))

    def warm_up() -> None:
        from kl_sync.quality.suites import engine

        engine()

    validate.warm_up = warm_up  # type: ignore[attr-defined]
    return validate


def _tally_quality(result: StepResult, kind: str, report: Any) -> None:
    tally = result.details.setdefault("quality", {}).setdefault(kind, {"rows": 0, "failures": {}})
    tally["rows"] += report.rows
    for check, failed in report.by_expectation.items():
        tally["failures"][check] = tally["failures"].get(check, 0) + failed


@dataclass(frozen=True)
class _Call:
    """One bulk call of a prepared batch: its rows, its operation, and a function of the client that
    sends the request bodies built for them ahead of time (one outcome per row)."""

    items: list[ClaimedItem]
    operation: Operation
    send: Callable[[Any], list[Any]]
    #: The leads its rows go after (:func:`_lead_of`): the call is posted, each row, only once
    #: Klaviyo accepted its lead (:func:`_after_leads`). Empty for a call of rows that go first.
    leads: frozenset[str] = frozenset()
    #: Each row's metric, for the counts of what was sent (its kind has metrics), else None: the
    #: rows are kept as their stored text (:func:`_as_stored`), not decoded again to count them.
    metrics: tuple[str | None, ...] = ()


def _as_stored(item: ClaimedItem) -> ClaimedItem:
    """``item`` as a built call keeps it: its stored text without the decoded payload, ~4× larger
    (:attr:`~kl_sync.state.outbox.ClaimedItem.text`). Two batches are alive at once, the one being
    sent and the one prepared ahead (benchmarks/README.md, benchmark 4)."""
    return item if item.text is None else item.with_payload(None)


def _decoded_again(item: ClaimedItem) -> ClaimedItem:
    """``item`` with its payload, decoded again from its stored text if a call dropped it."""
    return item if item.payload is not None else item.with_payload(loads(item.text))


class _InputsOf(Sequence[Any]):
    """A built call's inputs as the client reads them after posting (only to rebuild the rest of a
    batch Klaviyo partly rejected, :func:`~kl_sync.klaviyo.batches.send_batches`): each decoded from
    its row's stored text when read."""

    def __init__(self, operation: Operation, items: Sequence[ClaimedItem]) -> None:
        self._operation = operation
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._operation.input_of(_decoded_again(self._items[index]).payload)


def _lead_of(item: ClaimedItem) -> str | None:
    """The row ``item`` must go after: for an order's Ordered Product, its Placed Order
    (:func:`~kl_sync.kinds.unit_lead`); None for a lead or a row on its own."""
    unit = kind_of(item.kind).unit_of(item.key)
    if unit is None or unit_lead(unit) == item.key:
        return None
    return unit_lead(unit)


#: What building one item's request body may raise on a poison payload (one queued before the steps
#: checked payloads, or edited by hand): that item becomes a dead letter, its batch is sent.
_BUILD_ERRORS = (RecursionError, ValueError, TypeError, ArithmeticError, KeyError, AttributeError)


def _plan_calls(operation: Operation, items: list[ClaimedItem], order_keys: Mapping[int, Any] | None = None
                ) -> tuple[list[_Call], dict[int, str]]:
    """Split the items of one operation into bulk calls and build their request bodies now, so the
    thread that sends only posts them. Returns the calls, and the items whose body could not be built
    (outbox id -> why): a body that fails to build is rebuilt without them.

    Items kept as stored are decoded one call's worth at a time; ``order_keys`` (outbox id ->
    ``operation.order`` of the item, taken while it was decoded) order them without decoding them all."""
    if operation.order is None:
        ordered = items
    else:
        # An item the validator did not read (one that read only some rows) is decoded for its key.
        known = order_keys or {}
        ordered = sorted(items, key=lambda item: known[item.id] if item.id in known
                         else operation.order(_decoded_again(item)))
    calls = []
    unbuildable: dict[int, str] = {}
    for chunk in chunks(ordered, operation.items_per_request):
        chunk = [_decoded_again(item) for item in chunk]
        try:
            inputs = [operation.input_of(item.payload) for item in chunk]
            batches = operation.build(inputs)
        except _BUILD_ERRORS:
            chunk = [item for item in chunk if not _unbuildable(operation, item, unbuildable)]
            if not chunk:
                continue
            inputs = [operation.input_of(item.payload) for item in chunk]
            batches = operation.build(inputs)
        leads = frozenset(lead for item in chunk if (lead := _lead_of(item)) is not None)
        metrics = tuple(sys.intern(str(item.payload.get("metric", "?"))) if kind_of(item.kind).metrics is not None
                        else None for item in chunk)
        kept = [_as_stored(item) for item in chunk]
        del inputs  # the decoded payloads go with them; the client decodes again only to rebuild
        calls.append(_Call(kept, operation, functools.partial(_send_built, operation.send, _InputsOf(operation, kept),
                                                              batches), leads, metrics))
    return calls, unbuildable


def _unbuildable(operation: Operation, item: ClaimedItem, reasons: dict[int, str]) -> bool:
    """Whether ``item``'s request body cannot be built on its own (its reason recorded in ``reasons``)."""
    try:
        operation.build([operation.input_of(item.payload)])
    except _BUILD_ERRORS as exc:
        reasons[item.id] = f"its request body could not be built: {type(exc).__name__}: {str(exc)[:300]}"
        return True
    return False


def _send_built(send: Callable[..., list[Any]], inputs: list[Any], batches: list[Any], client: Any) -> list[Any]:
    return send(client, inputs, batches=batches)


def _record_outcomes(
    state: Engine,
    items: list[ClaimedItem],
    outcomes: list[Any],
    *,
    retries: Retries,
    run_id: str | None,
    result: StepResult,
    metrics: Sequence[str | None] = (),
) -> None:
    """Record each row's outcome, as far as this claim still holds it: a row whose lease ran out and
    was claimed by another worker is that worker's now (counted ``lease_lost``, left untouched).
    ``metrics``: each row's metric (:attr:`_Call.metrics`), else read from its payload."""
    now = utcnow()
    sent: dict[str | None, list[int]] = {}
    lost = 0
    with state.begin() as conn:
        for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
            if outcome.status == "sent":
                sent.setdefault(item.lease, []).append(item.id)
                kind = kind_of(item.kind)
                _count(result, f"sent_{kind.operation.name}")
                if kind.metrics is not None:
                    result.count_metric(metrics[index] if metrics else _decoded_again(item).payload.get("metric", "?"))
                continue
            if outcome.status == "rejected":
                # A dead letter keeps the payload as it was queued (decoded again from its text).
                if mark_dead(conn, _decoded_again(item), step="send", reason=f"rejected by Klaviyo: {outcome.reason}",
                             run_id=run_id):
                    result.dead_letters += 1
                else:
                    lost += 1
            else:
                attempts = item.attempts + 1
                if attempts >= retries.attempts:
                    if mark_dead(conn, _decoded_again(item)._replace(attempts=attempts), step="send", run_id=run_id,
                                 reason=f"gave up after {attempts} attempts: {outcome.reason}"):
                        result.dead_letters += 1
                    else:
                        lost += 1
                elif mark_retry(conn, item.id, attempts=attempts, error=outcome.reason or "retry",
                                next_attempt_at=now + dt.timedelta(seconds=retries.wait(attempts)), lease=item.lease):
                    _count(result, "retries")
                else:
                    lost += 1
        for lease, ids in sent.items():
            lost += len(ids) - mark_sent(conn, ids, run_id=run_id, lease=lease)
        # Dead letters of what Klaviyo accepted: settled when nothing reads the kind back, else noted re-sent.
        accepted = [item for item, outcome in zip(items, outcomes, strict=True) if outcome.status == "sent"]
        record_accepted(conn, [item.key for item in accepted], run_id=run_id,
                        unverifiable={item.key for item in accepted if kind_of(item.kind).verifier is None})
    if lost:
        _count(result, "lease_lost", lost)


def _count(result: StepResult, name: str, n: int = 1) -> None:
    result.details[name] = result.details.get(name, 0) + n


@dataclass
class _Prepared:
    """One claimed batch, validated, its bodies built: the calls to make and the quality verdicts."""

    claimed: list[ClaimedItem]
    calls: list[_Call] = field(default_factory=list)
    reports: list[tuple[str, Any]] = field(default_factory=list)
    quality_rejects: int = 0
    #: Rows whose request body could not be built (dead letters of the send step).
    unbuildable: int = 0


@dataclass
class _Read:
    """What reading a claimed batch's stored payloads found (:func:`_quality_failures`)."""

    #: Outbox id -> the row's stored text and why it does not decode.
    undecodable: dict[int, UndecodablePayload] = field(default_factory=dict)
    #: Outbox id -> its operation's ``order`` of the row (for operations that order their rows).
    order_keys: dict[int, Any] = field(default_factory=dict)


def _payloads(items: Sequence[ClaimedItem], read: _Read) -> Iterator[tuple[str, Any]]:
    """Each item's key and payload, decoded as it is read and dropped after (a claim of the sender
    keeps the text only: benchmark 4); a text that does not decode is left out, in ``read``."""
    for item in items:
        payload = item.payload if item.payload is not None else decode_stored(item.text)
        if isinstance(payload, UndecodablePayload):
            read.undecodable[item.id] = payload
            continue
        order = kind_of(item.kind).operation.order
        if order is not None:
            read.order_keys[item.id] = order(item.with_payload(payload))
        yield item.key, payload


def _quality_failures(batch: _Prepared, validate: Validator | None, read: _Read) -> dict[str, str]:
    """Each of the batch's rows through its kind's suite, kind by kind, each payload decoded as the
    suite reads it (:func:`_payloads`): the keys that failed, with their reasons; the rows that do
    not decode and the order keys are left in ``read``. A row of a unit (an order's Placed Order and
    Ordered Products, :attr:`Kind.unit`) fails with the rest of its unit in the batch: Klaviyo must
    never get a line without its order."""
    by_kind: dict[str, list[ClaimedItem]] = {}
    for item in batch.claimed:
        by_kind.setdefault(item.kind, []).append(item)
    failures: dict[str, str] = {}
    for kind, of_kind in by_kind.items():
        if validate is None:
            for _ in _payloads(of_kind, read):
                pass
            continue
        report = validate(kind, _payloads(of_kind, read))
        if report.rows:  # a kind none of whose rows decoded has no report, as before rows were read lazily
            batch.reports.append((kind, report))
        for key, names in report.failures.items():
            failures[key] = "failed data-quality expectations: " + "; ".join(names)
    items = [item for item in batch.claimed if item.id not in read.undecodable]
    failed_units = {}
    for item in items:
        unit = kind_of(item.kind).unit_of(item.key)
        if unit is not None and item.key in failures:
            failed_units.setdefault(unit, item.key)
    for item in items:
        unit = kind_of(item.kind).unit_of(item.key)
        if unit in failed_units and item.key not in failures:
            first = failed_units[unit]
            failures[item.key] = f"held with its order ({unit}): {first} {failures[first]}"
    return failures


def _prepare_batch(
    state: Engine,
    *,
    batch_size: int,
    lease_seconds: int,
    owner: str,
    validate: Validator | None,
    run_id: str | None,
) -> _Prepared:
    """Lease a batch, validate it (rows failing an expectation become dead letters at once) and build
    the request bodies of what passed."""
    # Kept as stored: each payload is decoded as its suite reads it, then one call's worth at a time
    # as the bodies are built, never the whole batch's at once (benchmark 4).
    batch = _Prepared(claim(state, limit=batch_size, lease_seconds=lease_seconds, owner=owner, decode=False))
    if not batch.claimed:
        return batch
    read = _Read()
    failures = _quality_failures(batch, validate, read)
    # A payload that is not JSON cannot be validated nor sent: a dead letter saying so. It stays in
    # ``claimed``, so the batch counts it (read, a dead letter) like any other row.
    readable = [item for item in batch.claimed if item.id not in read.undecodable]
    if read.undecodable:
        with state.begin() as conn:
            for item in batch.claimed:
                undecodable = read.undecodable.get(item.id)
                if undecodable is None:
                    continue
                reason = f"its stored payload is not JSON ({undecodable.reason}); it cannot be sent"
                batch.unbuildable += mark_dead(conn, item._replace(payload=undecodable.text), step="send",
                                               reason=reason, run_id=run_id)
    passing: dict[Operation, list[ClaimedItem]] = {}
    with state.begin() as conn:
        for item in readable:
            if item.key in failures:
                if mark_dead(conn, _decoded_again(item), step="quality", reason=failures[item.key], run_id=run_id):
                    batch.quality_rejects += 1
            else:
                # Kinds that share an operation share its requests (the three event kinds).
                passing.setdefault(kind_of(item.kind).operation, []).append(item)
    by_id = {item.id: item for item in readable}
    # The rows that go after a lead (an order's lines) go in calls of their own, after the batch's
    # other calls: they are posted once their leads' requests were answered (:func:`_after_leads`).
    following: list[_Call] = []
    for operation, items in passing.items():
        for group, planned in (([item for item in items if _lead_of(item) is None], batch.calls),
                               ([item for item in items if _lead_of(item) is not None], following)):
            if not group:
                continue
            calls, unbuildable = _plan_calls(operation, group, read.order_keys)
            planned.extend(calls)
            if unbuildable:
                with state.begin() as conn:
                    batch.unbuildable += sum(mark_dead(conn, _decoded_again(by_id[item_id]), step="send", reason=reason,
                                                       run_id=run_id)
                                             for item_id, reason in unbuildable.items())
    batch.calls.extend(following)
    return batch


def _after_leads(state: Engine, flights: _Flights, call: _Call, *, run_id: str | None,
                 result: StepResult) -> list[_Call]:
    """What of ``call`` may be posted now: "Klaviyo never has a line without its order", so an order's
    Ordered Product goes only after Klaviyo accepted its Placed Order, whichever batch, worker or
    retry each came in. A lead on the way in this sender's own requests is waited for (its answer
    recorded) first; then one query reads where the call's leads stand. A row whose lead is dead (or
    was never queued) is held with it, a dead letter; one whose lead is still pending (due for retry,
    or another claim is sending it) goes back to the outbox, not counted as a send, due again when
    its lead is (or when that claim lapses). Returns the calls to post: ``call`` itself, or the
    bodies rebuilt for the rows that may go."""
    if not call.leads:
        return [call]
    flights.land_holding(call.leads)
    now = utcnow()
    with state.connect() as conn:
        leads = lead_states(conn, list(call.leads), now)
    ready: list[ClaimedItem] = []
    held: list[tuple[ClaimedItem, str]] = []
    waiting: dict[str, list[ClaimedItem]] = {}
    for item in call.items:
        lead = _lead_of(item)
        found = None if lead is None else leads.get(lead)
        if lead is None or (found is not None and found.accepted):
            ready.append(item)
        elif found is None or found.dead:
            unit = kind_of(item.kind).unit_of(item.key)
            held.append((item, f"held with its order ({unit}): {lead} is "
                               f"{'not in the outbox' if found is None else 'a dead letter'}"))
        else:
            waiting.setdefault(lead, []).append(item)
    if not held and not waiting:
        return [call]
    with state.begin() as conn:
        for item, reason in held:
            if mark_dead(conn, _decoded_again(item), step="send", reason=reason, run_id=run_id):
                result.dead_letters += 1
                _count(result, "held_with_order")
        for lead, items in waiting.items():
            found = leads[lead]
            until = max(found.next_attempt_at, found.leased_until or now, now + dt.timedelta(seconds=RECHECK_SECONDS))
            for lease, ids in _by_lease(items).items():
                _count(result, "waiting_for_order", defer(conn, ids, until=until, lease=lease,
                                                          why=f"waits for its order: {lead} is not sent yet"))
    return _plan_calls(call.operation, ready)[0] if ready else []


def _release_prepared(state: Engine, upcoming: Future[_Prepared]) -> None:
    """Hand back a batch claimed ahead and never sent."""
    try:
        batch = upcoming.result()
    except Exception:  # its own failure is secondary to the error that stopped the send
        return
    with state.begin() as conn:
        _release_items(conn, [item for call in batch.calls for item in call.items])


def _release_items(conn: Any, items: Sequence[ClaimedItem]) -> int:
    """Hand back these rows, each only as far as its own claim still holds it."""
    return sum(release(conn, ids, lease=lease) for lease, ids in _by_lease(items).items())


def _by_lease(items: Sequence[ClaimedItem]) -> dict[str | None, list[int]]:
    by_lease: dict[str | None, list[int]] = {}
    for item in items:
        by_lease.setdefault(item.lease, []).append(item.id)
    return by_lease


def _ramp(batch_size: int) -> list[int]:
    """Sizes of the first batches: one call's worth, then a burst window's worth of calls, then
    ``batch_size``. The first request goes out as soon as 1,000 rows are ready instead of waiting for
    a whole batch to be claimed, validated and built (benchmarks/README.md, benchmark 1). The second
    batch fills the bulk endpoint's burst window (10 requests a second) while the first full batch is
    prepared: after a second batch of four calls, posted in one burst, the sender waited ~0.8 s for a
    20,000-row batch (benchmark 8). Every batch costs one GX validation (~0.13 s whatever its size), so
    the ramp is short (benchmark 6)."""
    first = EVENTS.items_per_request
    return [size for size in (first, EVENTS.endpoint.burst.limit * first) if size < batch_size]


class _Flights:
    """Calls posted and not yet answered, each on a thread of ``pool``: at most ``in_flight`` of one
    operation at once (one, for an operation whose requests must arrive in order). With a round trip
    of 250 ms, one request at a time allows 4 a second where Klaviyo's burst window takes 10; the
    client's rate limiter still spaces every request and counts it from its answer. Outcomes are
    recorded by ``land`` in the order the calls were posted, each in its own transaction."""

    def __init__(self, pool: ThreadPoolExecutor, client: Any, land: Callable[[_Call, list[Any]], None],
                 in_flight: int) -> None:
        self._pool = pool
        self._client = client
        self._land = land
        self._in_flight = in_flight
        self._flying: deque[tuple[_Call, Future[list[Any]]]] = deque()
        #: Rows of calls that raised instead of answering: never recorded, to be handed back.
        self.failed: list[ClaimedItem] = []
        #: Operations that have had an answer: until then one request goes alone, so a refused
        #: key stops the run at its first answer instead of after ``in_flight`` refusals.
        self._answered: set[str] = set()

    def post(self, call: _Call) -> None:
        """Post ``call`` once its operation has room, recording the oldest answers to make it."""
        concurrent = call.operation.concurrent and call.operation.name in self._answered
        bound = self._in_flight if concurrent else 1
        while sum(1 for flying, _ in self._flying if flying.operation is call.operation) >= bound:
            self.land_oldest()
        self._flying.append((call, self._pool.submit(call.send, self._client)))

    def land_oldest(self) -> None:
        call, future = self._flying.popleft()
        try:
            outcomes = future.result()
        except BaseException:
            self.failed.extend(call.items)
            raise
        self._answered.add(call.operation.name)
        self._land(call, outcomes)

    def land_all(self) -> None:
        while self._flying:
            self.land_oldest()

    def land_holding(self, keys: frozenset[str]) -> None:
        """Record the answers of the calls on the way that carry any of ``keys`` (and of those posted
        before them: answers are recorded in the order the calls were posted)."""
        last = max((n for n, (call, _) in enumerate(self._flying) if not keys.isdisjoint(i.key for i in call.items)),
                   default=-1)
        for _ in range(last + 1):
            self.land_oldest()

    def abandon(self) -> list[ClaimedItem]:
        """After an error: record what the calls still in flight came to, and return the rows of
        every call that raised (to be handed back)."""
        while self._flying:
            try:
                self.land_oldest()
            except Exception:
                continue
        failed, self.failed = self.failed, []
        return failed


class OutboxFeed:
    """How a sender running beside the store-reading steps learns that rows were queued, and when no
    more will come. The steps call :meth:`committed` after each chunk's commit and :meth:`close` when
    they are done; a sender that finds nothing due :meth:`wait`\ s instead of stopping, and stops once
    the feed is closed and a last claim found nothing. :meth:`cancel` (the steps failed, or the run
    was interrupted) stops the sender at its next batch, rows claimed and not sent handed back."""

    #: A sender waiting on the feed claims again at least this often (rows coming due after a retry's
    #: wait are not announced by a commit).
    POLL_SECONDS = 1.0

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._commits = 0
        self._seen = 0
        self._closed = False
        self.cancelled = False

    def committed(self) -> None:
        with self._changed:
            self._commits += 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def cancel(self) -> None:
        self.cancelled = True
        self.close()

    def wait(self) -> bool:
        """After a claim that found nothing: block until rows were committed since the last wait, the
        feed closed, or a poll's time passed. True: claim again; False: nothing more will come (closed,
        and nothing committed since the last claim began)."""
        with self._changed:
            if self._commits == self._seen and not self._closed:
                self._changed.wait(self.POLL_SECONDS)
            if self.cancelled:
                return False
            if self._commits != self._seen:
                self._seen = self._commits
                return True
            return not self._closed


def _count_prepared(result: StepResult, batch: _Prepared) -> None:
    result.rows_read += len(batch.claimed)
    for kind, report in batch.reports:
        _tally_quality(result, kind, report)
    result.dead_letters += batch.quality_rejects + batch.unbuildable
    if batch.unbuildable:
        _count(result, "unbuildable", batch.unbuildable)
    if batch.quality_rejects:
        _count(result, "quality_rejects", batch.quality_rejects)


def _send_calls(state: Engine, flights: _Flights, calls: Sequence[_Call], stop: threading.Event | None = None,
                ready: Callable[[_Call], list[_Call]] = lambda call: [call]) -> None:
    """Post these calls one by one; the flights record each call's outcomes as it is answered.
    ``ready``: what of a call may be posted now (:func:`_after_leads`). Once ``stop`` is set, the
    calls not posted yet go back to the outbox untouched.

    A deque of calls is emptied as they are posted, so a call recorded is freed (its rows' text, its
    bodies: ~2 MB per 1,000 order events) while the rest of its batch is still being sent."""
    pending = calls if isinstance(calls, deque) else deque(calls)
    while pending:
        if stop is not None and stop.is_set():
            with state.begin() as conn:
                _release_items(conn, [item for unposted in pending for item in unposted.items])
            pending.clear()
            return
        call = pending.popleft()
        with _handing_back(state, flights, [call, *pending]):
            for posting in ready(call):
                flights.post(posting)


def _leading_and_following(batch: _Prepared) -> tuple[list[_Call], list[_Call]]:
    """A batch's calls of rows that go first, and its calls of rows that go after a lead (an order's
    lines, :func:`_lead_of`), in the order they were planned."""
    return [call for call in batch.calls if not call.leads], [call for call in batch.calls if call.leads]


@contextmanager
def _handing_back(state: Engine, flights: _Flights, unposted: Sequence[_Call] = ()) -> Iterator[None]:
    """An auth error stops the send: the answers of calls still in flight are recorded, and every
    row not sent (not posted yet, or its call refused) goes back to the outbox untouched."""
    from kl_sync.klaviyo.errors import AuthError

    try:
        yield
    except AuthError:
        unfinished = [i for call in unposted for i in call.items] + flights.abandon()
        with state.begin() as conn:
            _release_items(conn, unfinished)
        raise
    except BaseException:
        # Anything else (a second signal, the state database gone): hand back what was not posted,
        # as far as the state database allows; the error is the one to raise.
        with suppress(Exception), state.begin() as conn:
            _release_items(conn, [i for call in unposted for i in call.items])
        raise


def send_outbox(
    state: Engine,
    client: Any,
    *,
    retries: Retries = OUTBOX_RETRIES,
    batch_size: int = 5000,
    lease_seconds: int = 300,
    validate: Validator | None = None,
    run_id: str | None = None,
    owner: str | None = None,
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
    in_flight: int = 1,
    feed: OutboxFeed | None = None,
    stop: threading.Event | None = None,
    warm_up: bool = False,
) -> StepResult:
    """Drain the outbox: claim, validate, send, record — until nothing is due (or ``max_batches``).

    ``feed``: the sender runs while the store-reading steps queue rows; when nothing is due it waits
    on the feed for their next commit instead of stopping, and stops once the feed is closed and the
    outbox drained (:class:`OutboxFeed`).

    ``in_flight``: requests of one endpoint posted at once, for operations whose requests may arrive
    in any order (:attr:`~kl_sync.kinds.Operation.concurrent`); each is recorded once answered.

    ``retries`` is the outbox half of the retry policy: a row the client could not deliver is due
    again after ``retries.wait(attempts)``, and a dead letter after ``retries.attempts`` sends.

    ``stop`` (set by SIGTERM or SIGINT): claim nothing more, let the requests in flight be answered
    and recorded, hand back every row not posted (``details["stopped"]``).

    ``warm_up``: load the validator's suites (``validate.warm_up``: GX's import and context, seconds
    of CPU) on the preparing thread before the first claim, while the rows are still being read in
    another process (:mod:`kl_sync.store_process`); otherwise they load on the first validation.

    Raises the client's ``AuthError`` after handing the unfinished rows back.
    """
    result = StepResult("send")
    for name in (*(f"sent_{operation.name}" for operation in OPERATIONS), "retries"):
        result.details[name] = 0
    batches = 0
    owner = owner or worker_name()
    prepare = functools.partial(_prepare_batch, state, lease_seconds=lease_seconds, owner=owner, validate=validate,
                                run_id=run_id)
    sizes = deque(_ramp(batch_size))
    submitted = 0
    upcoming: deque[tuple[int, Future[_Prepared]]] = deque()
    #: The last batch's calls of rows that go after a lead, posted after the next batch's first calls.
    held: list[_Call] = []

    def stopped() -> bool:
        """A signal stopped the run, or the steps the sender runs beside failed."""
        return (stop is not None and stop.is_set()) or (feed is not None and feed.cancelled)

    def submit_more() -> None:
        nonlocal submitted
        while len(upcoming) < PREPARED_AHEAD and (max_batches is None or submitted < max_batches) and not stopped():
            size = sizes.popleft() if sizes else batch_size
            upcoming.append((size, pool.submit(prepare, batch_size=size)))
            submitted += 1

    def ready(call: _Call) -> list[_Call]:
        return _after_leads(state, flights, call, run_id=run_id, result=result)

    def land(call: _Call, outcomes: list[Any]) -> None:
        _record_outcomes(state, call.items, outcomes, retries=retries, run_id=run_id, result=result,
                         metrics=call.metrics)
        if progress is not None:
            progress(len(call.items))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kl-sync-prepare") as pool, \
            ThreadPoolExecutor(max_workers=in_flight * len(OPERATIONS), thread_name_prefix="kl-sync-post") as posts:
        flights = _Flights(posts, client, land, in_flight)
        if warm_up and validate is not None and hasattr(validate, "warm_up"):
            # Its error, if any, is the first validation's to raise (it loads them again).
            pool.submit(validate.warm_up)
        try:
            submit_more()
            while upcoming and not stopped():
                size, prepared = upcoming.popleft()
                batch = prepared.result()
                if not batch.claimed:
                    submitted -= 1
                    # Ahead of the steps queuing rows: post the lines held back, record what was
                    # answered, then claim again after their next commit (the ramp starts where it was).
                    posting, held = held, []
                    _send_calls(state, flights, posting, stop, ready)
                    with _handing_back(state, flights):
                        flights.land_all()
                    if feed is None or not feed.wait():
                        break
                    sizes.appendleft(size)
                    submit_more()
                    continue
                batches += 1
                # Prepare the next batch while this one is sent: sending mostly waits (on the rate
                # limiter, on Klaviyo), so claiming, validating and building bodies no longer add to
                # the time a send takes (benchmarks/README.md, benchmark 1).
                submit_more()
                _count_prepared(result, batch)
                # An order's lines wait for their Placed Order's answer (:func:`_after_leads`): posted
                # right after it, they would hold up the posting of everything behind them for that
                # round trip, one window slot lost per batch of orders (benchmark 8: ~1.4 s a run).
                # So a batch's lines go after the NEXT batch's first rows, by when their leads have
                # long been answered; the last batch's, once the outbox is drained.
                leading, following = _leading_and_following(batch)
                posting, held = deque([*leading, *held]), following
                # Only ``posting`` holds the calls now: each is freed once recorded (_send_calls).
                del leading
                batch.calls.clear()
                batch.claimed.clear()  # counted above (its reports too); its rows are its calls'
                batch.reports.clear()
                _send_calls(state, flights, posting, stop, ready)
                if stop is not None and stop.is_set():
                    result.details["stopped"] = True
                    break
            if held and not stopped():
                posting, held = held, []
                _send_calls(state, flights, posting, stop, ready)
            with _handing_back(state, flights):
                flights.land_all()
        finally:
            # Calls still in flight (another error stopped the send) are waited for and recorded
            # as far as the state database allows: that error is the one to raise.
            with suppress(Exception):
                flights.abandon()
            # Lines held back and never posted, and batches prepared ahead and never sent (the
            # outbox ran dry, a signal, or an error stopped the send) go back to the outbox as they were.
            if held:
                with suppress(Exception), state.begin() as conn:
                    _release_items(conn, [item for call in held for item in call.items])
            while upcoming:
                _release_prepared(state, upcoming.popleft()[1])
    result.details["batches"] = batches
    return result


def preview_outbox(state: Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The request bodies the next send would make, built from pending rows without claiming them
    (``--dry-run``)."""
    with state.connect() as conn:
        rows = pending_rows(conn, limit=limit)
    return [{"key": row.key, "kind": row.kind, "problem": f"its stored payload is not JSON ({row.payload.reason})"}
            if isinstance(row.payload, UndecodablePayload) else
            {"key": row.key, "kind": row.kind, "body": kind_of(row.kind).operation.preview(row.payload)} for row in rows]

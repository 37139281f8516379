"""Steps as declared streams: the one loop every store-reading step runs.

A store-reading step is a :class:`StreamStep`, data rather than a loop of its own:

- its **source**: a store table read after the step's cursor (:class:`StoreStream`, with an optional
  filter and a rewind such as the orders' lookback), or the customers the other steps touched
  (:class:`TouchedCustomers`);
- its **prepare**: per chunk, load what its rows need (their customers, lines, known lifecycle) and
  return the **row builder**, which turns one row into :class:`Built` (outbox items, touched
  customers, a row of the step's own state) or raises :class:`~kl_sync.steps.common.BadRow`;
- its **record**: how that step state is written (orders: their lifecycle);
- its **kinds** and **key prefix**: what it queues, and the ``<prefix>:`` every key and dead letter
  of its rows starts with (``log:``, ``order:``, ``suppress:``), so a key names the step that can
  rebuild it from the store.

:meth:`StreamStep.run` reads chunk after chunk, builds every row (a bad row becomes a dead letter naming
it, never a crash), and commits the chunk's outbox rows, dead letters, touched customers, step
state and cursor in ONE transaction: a crash before the commit repeats the chunk; after it, nothing
of it is redone.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Row

from kl_sync.kinds import kind_of
from kl_sync.payloads import printable, printable_value
from kl_sync.state.codec import PayloadProblem, encode_payload
from kl_sync.state.cursors import get_cursor, parse_cursor_datetime, set_cursor
from kl_sync.state.dead_letters import add_dead_letters, dead_letter_keys
from kl_sync.state.delivery import requeue_rebuilt
from kl_sync.state.outbox import OutboxItem, enqueue
from kl_sync.state.touched import touch_customers, touched_customer_ids, untouch_customers
from kl_sync.steps.common import BadRow, StepResult
from kl_sync.store.readers import STREAMS, customers_by_id, read_after, unreadable_problem

if TYPE_CHECKING:
    from kl_sync.settings import Settings


@dataclass(frozen=True)
class StepContext:
    """What every chunk of one step's run is prepared with."""

    store: Engine
    state: Engine
    settings: Settings
    #: The run's clock, once per run (backfill is decided against it).
    now: dt.datetime


@dataclass
class Built:
    """What one source row becomes."""

    items: list[OutboxItem] = field(default_factory=list)
    #: Customers whose consent the suppress step should check (their events were queued).
    touched: tuple[int, ...] = ()
    #: A row of the step's own state, written by :attr:`StreamStep.record` in the chunk's transaction.
    record: Any = None


RowBuilder = Callable[[Row[Any]], Built]


@dataclass(frozen=True)
class Chunk:
    """Rows read from a source, and how to mark them consumed inside the chunk's commit."""

    rows: list[Row[Any]]
    #: Source rows the chunk covers (a touched customer no longer in the store is read, not built).
    read: int
    done: Callable[[Connection], None]
    #: Whether a row is past the stored cursor; None when all are. A row the lookback re-reads counts
    #: as neither read nor touched unless it queues something new (a late row).
    fresh: Callable[[Row[Any]], bool] | None = None


class Source(Protocol):
    def chunks(self, context: StepContext, *, from_start: bool) -> Iterator[Chunk]: ...


Rewind = Callable[[Sequence[Any], "Settings"], Sequence[Any]]


@dataclass(frozen=True)
class StoreStream:
    """A store stream (:data:`~kl_sync.store.readers.STREAMS`) read after the step's cursor, which is
    kept in the state database under the stream's name and moved past each committed chunk."""

    stream: str
    #: A filter on the stream's rows, from the settings.
    where: Callable[[Settings], Any] | None = None
    #: Where to resume reading, given the stored cursor (a lookback re-reads before it).
    rewind: Rewind | None = None

    def chunks(self, context: StepContext, *, from_start: bool) -> Iterator[Chunk]:
        stream = STREAMS[self.stream]
        with context.state.connect() as conn:
            cursor = None if from_start else get_cursor(conn, self.stream)
        fresh = None
        if cursor is not None and self.rewind is not None:
            if len(stream.cursor) == 1:  # an id cursor: past it is a plain comparison
                stored = tuple(cursor)
                fresh = lambda row: stream.cursor_of(row) > stored  # noqa: E731
            cursor = self.rewind(cursor, context.settings)
        where = None if self.where is None else self.where(context.settings)
        for rows in read_after(context.store, stream, cursor, chunk_size=context.settings.chunk_size, where=where):
            # The cursor stays at the chunk's last row whose cursor values are readable: a later row
            # with, say, an updated_at that is not a date is read (and lettered) again by the next
            # run, harmlessly, instead of a cursor no run could resume from.
            last = next((row for row in reversed(rows) if stream.readable_cursor(row)), None)
            done = _nothing if last is None else functools.partial(set_cursor, stream=self.stream,
                                                                   value=stream.cursor_of(last))
            read = len(rows) if fresh is None else sum(1 for row in rows if fresh(row))
            yield Chunk(rows, read, done, fresh)


def _nothing(conn: Connection) -> None:
    """A chunk that moves no cursor."""


def lookback(window: Callable[[Settings], dt.timedelta]) -> Rewind:
    """Resume a ``(time, id)`` cursor ``window`` earlier: a row updated within the same second as the
    cursor row, or whose transaction committed late, would otherwise be skipped for good. Re-reading
    is harmless: keys (and the step's own state) make a re-read row queue nothing new."""

    def rewind(cursor: Sequence[Any], settings: Settings) -> Sequence[Any]:
        return [parse_cursor_datetime(cursor[0]) - window(settings), -1]  # type: ignore[operator]

    return rewind


def id_lookback(window: Callable[[Settings], int]) -> Rewind:
    """Resume an ``(id,)`` cursor ``window`` ids earlier: ids are handed out at insert but rows become
    visible at commit, so a row whose transaction committed after a later row's was read would
    otherwise be skipped for good. Re-reading is harmless: a re-read row's key is already queued (or
    its dead letter already written), so it queues nothing new."""

    def rewind(cursor: Sequence[Any], settings: Settings) -> Sequence[Any]:
        return [max(0, int(cursor[0]) - window(settings) - 1)]  # rows strictly after: the window's ids and the cursor's

    return rewind


@dataclass(frozen=True)
class TouchedCustomers:
    """The customers the other steps touched (their CURRENT store rows), consumed as they commit."""

    def chunks(self, context: StepContext, *, from_start: bool) -> Iterator[Chunk]:
        while True:
            with context.state.connect() as conn:
                ids = touched_customer_ids(conn, limit=context.settings.chunk_size)
            if not ids:
                return
            rows = list(customers_by_id(context.store, ids).values())
            yield Chunk(rows, len(ids), functools.partial(untouch_customers, customer_ids=ids))


@dataclass(frozen=True)
class StreamStep:
    """One store-reading step, declared."""

    name: str
    source: Source
    #: The outbox kinds it queues; its dead letters carry the first.
    kinds: tuple[str, ...]
    #: Every key of its rows is ``<key_prefix>:…``; a bad row's dead letter is ``<key_prefix>:<row id>``.
    key_prefix: str
    #: (context, a chunk's rows) -> the row builder, with what those rows need loaded.
    prepare: Callable[[StepContext, list[Row[Any]]], RowBuilder]
    #: Writes the rows' :attr:`Built.record` values (in the chunk's transaction).
    record: Callable[[Connection, list[Any]], None] | None = None
    #: What the progress bar says it counts.
    progress_label: str = "rows"
    #: Also report the rows read under this name in the step's details.
    rows_detail: str | None = None

    def letter_key(self, row: Row[Any]) -> str:
        return f"{self.key_prefix}:{row.id}"

    def run(
        self,
        store: Engine,
        state: Engine,
        settings: Settings,
        *,
        from_start: bool = False,
        run_id: str | None = None,
        now: dt.datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> StepResult:
        """Run the step: every chunk of its source, each committed whole (with ``from_start``, a
        store stream from its first row)."""
        context = StepContext(store, state, settings, now or dt.datetime.now(dt.UTC))
        result = StepResult(self.name)
        for chunk in self.source.chunks(context, from_start=from_start):
            # The chunk's output is built and committed in a call of its own, so it is freed before the
            # next chunk is read and built: bound in this loop, a chunk's items (payloads and their
            # encoded text) lived on through the next one's, twice the step's memory (benchmark 4).
            _build_and_commit(state, self, context, chunk, result, run_id, from_start=from_start)
            result.rows_read += chunk.read
            if self.rows_detail is not None:
                result.details[self.rows_detail] = result.rows_read
            if progress is not None:
                progress(chunk.read)
        return result


@dataclass
class _ChunkOutput:
    items: list[OutboxItem] = field(default_factory=list)
    letters: list[dict[str, Any]] = field(default_factory=list)
    touched: list[int] = field(default_factory=list)
    #: Re-read rows' (keys, customers): touched only if one of the keys is queued new.
    touched_if_new: list[tuple[tuple[str, ...], tuple[int, ...]]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)


#: What building one row may raise on a poison value (deep or huge JSON, absurd numbers, text that is
#: not UTF-8): that row becomes a dead letter naming the error, and the chunk goes on.
_POISON = (BadRow, PayloadProblem, RecursionError, ValueError, ArithmeticError, TypeError)


def _built_checked(step: StreamStep, build: RowBuilder, row: Row[Any]) -> Built:
    """``build(row)`` with every item's payload encoded and checked (:func:`encode_payload`): a row is
    queued whole or not at all (an order's events go together), so one bad item letters its row. A
    row holding a value not of its column's type (:func:`unreadable_problem`) is not built."""
    problem = unreadable_problem(row)
    if problem is not None:
        raise BadRow(f"{step.letter_key(row)}: {problem}")
    try:
        built = build(row)
    except BadRow:
        raise
    except RecursionError:
        raise BadRow("nests too deeply to be read (recursion limit)") from None
    encoded = []
    for item in built.items:
        try:
            encoded.append(item.as_queued(encode_payload(item.payload)))
        except PayloadProblem as exc:
            raise BadRow(f"{item.key}: {exc}") from None
    built.items = encoded
    return built


def _build(step: StreamStep, rows: list[Row[Any]], build: RowBuilder,
           fresh: Callable[[Row[Any]], bool] | None = None) -> _ChunkOutput:
    out = _ChunkOutput()
    for row in rows:
        try:
            built = _built_checked(step, build, row)
        except _POISON as exc:
            reason = str(exc) if isinstance(exc, BadRow) else f"could not be built: {type(exc).__name__}: {exc}"
            out.letters.append({"key": step.letter_key(row), "step": step.name, "kind": step.kinds[0],
                                "reason": printable(reason)[:2000], "original": printable_value(dict(row._mapping))})
            continue
        out.items.extend(built.items)
        if fresh is None or fresh(row):
            out.touched.extend(built.touched)
        elif built.touched:
            out.touched_if_new.append((tuple(item.key for item in built.items), tuple(built.touched)))
        if built.record is not None:
            out.records.append(built.record)
    return out


def _build_and_commit(state: Engine, step: StreamStep, context: StepContext, chunk: Chunk, result: StepResult,
                      run_id: str | None, *, from_start: bool) -> None:
    out = _build(step, chunk.rows, step.prepare(context, chunk.rows), fresh=chunk.fresh)
    _commit(state, step, chunk, out, result, run_id, from_start=from_start)


def _commit(state: Engine, step: StreamStep, chunk: Chunk, out: _ChunkOutput, result: StepResult,
            run_id: str | None, *, from_start: bool = False) -> None:
    """The chunk's outbox rows, dead letters, step state, touched customers and cursor, in ONE transaction."""
    with state.begin() as conn:
        new_keys = enqueue(conn, out.items, run_id=run_id)
        # A dead key met again is rebuilt from this read (always from the start, else if it changed).
        new_keys |= requeue_rebuilt(conn, [item for item in out.items if item.key not in new_keys],
                                    changed_only=not from_start, run_id=run_id)
        # A re-read (--from-start, a lookback) must not dead-letter the same row twice.
        known = dead_letter_keys(conn, [d["key"] for d in out.letters], step=step.name)
        letters = [d for d in out.letters if d["key"] not in known]
        add_dead_letters(conn, letters, run_id=run_id)
        if step.record is not None and out.records:
            step.record(conn, out.records)
        touch_customers(conn, out.touched + [customer for keys, customers in out.touched_if_new
                                             if any(key in new_keys for key in keys) for customer in customers])
        chunk.done(conn)
    for item in out.items:
        if item.key in new_keys and kind_of(item.kind).metrics is not None:
            result.count_metric(item.metric or "?")
    result.queued += len(new_keys)
    result.dead_letters += len(letters)

"""The ``outbox`` table: one row per Klaviyo operation to make, under a deterministic key.

Steps enqueue rows inside their chunk's transaction (a key already there is skipped, so every step
is re-runnable); the sender claims due rows under a lease and marks each sent, due again, or dead.

Every outcome checks the lease owner: a claim's token (:attr:`ClaimedItem.lease`) is the only
licence to mark its rows. A worker whose lease ran out (it stalled, and another worker claimed the
rows) marks nothing: the rows are the other worker's now, and the functions say how many they
did not touch (the sender's ``lease_lost``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.db import backend
from kl_sync.state.codec import dumps, loads, utcnow
from kl_sync.state.inserts import binder, bound, existing, insert_ignoring_duplicates
from kl_sync.state.tables import DEAD, PENDING, SENT, VERIFIED, outbox


@dataclass(frozen=True)
class OutboxItem:
    key: str
    kind: str
    #: None once a step encoded it (:meth:`as_queued`).
    payload: dict[str, Any] | None
    #: The payload as stored, when the step already encoded (and checked) it: ``codec.encode_payload``.
    text: str | None = None
    #: The payload's metric (whole) and time, read before the payload was dropped (:meth:`as_queued`).
    facts: tuple[str | None, dt.datetime | None] | None = None

    def as_queued(self, text: str) -> OutboxItem:
        """This item as a step commits it: its encoded, checked ``text`` and what the outbox's columns
        and the step's counts read of its payload, without the payload. Decoded, a payload takes ~3×
        its text, and a chunk of 5,000 orders holds 15,000 items until it is committed."""
        return OutboxItem(self.key, self.kind, None, text, _facts(self.payload))

    def decoded(self) -> dict[str, Any]:
        """The payload, decoded again from its text when the step dropped it (:meth:`as_queued`)."""
        return self.payload if self.payload is not None else loads(self.text)

    @property
    def stored_text(self) -> str:
        """The payload as the outbox stores it."""
        return dumps(self.payload) if self.text is None else self.text

    @property
    def metric(self) -> str | None:
        """The payload's metric, whole (None when it has none)."""
        return (self.facts if self.facts is not None else _facts(self.payload))[0]

    def event_facts(self) -> tuple[str | None, dt.datetime | None]:
        """The outbox's ``metric`` and ``event_time`` columns for this item (:func:`event_facts`)."""
        metric, when = self.facts if self.facts is not None else _facts(self.payload)
        return (None if metric is None else metric[:128]), when


class ClaimedItem(NamedTuple):
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    #: The token of the claim holding it (None: a row read without claiming it).
    lease: str | None = None
    #: The payload as stored (JSON), when it was read from the outbox and decodes. Decoded, a payload
    #: takes ~4× its text (76 MB for 20,000 order events, against 20 MB): the sender keeps only this
    #: once a row's request body is built (``payload`` None) and decodes it again where it needs the
    #: payload after that (a dead letter's original, a partial rejection's rebuild).
    text: str | None = None

    def with_payload(self, payload: Any) -> ClaimedItem:
        """This row with ``payload`` in place of its own: ``_replace(payload=payload)`` at a third of
        its cost (the sender does it up to three times a row: benchmark 8)."""
        return tuple.__new__(ClaimedItem, (self[0], self[1], self[2], payload, self[4], self[5], self[6]))


def _rows(conn: Connection, condition: Any, *, limit: int | None) -> list[Any]:
    """The rows meeting ``condition``, in queue order, their payloads as stored."""
    query = select(outbox.c.id, outbox.c.key, outbox.c.kind, outbox.c.payload, outbox.c.attempts)
    return conn.execute(query.where(condition).order_by(outbox.c.id).limit(limit)).all()


@dataclass(frozen=True)
class UndecodablePayload:
    """A row's payload as stored, when it is not JSON (text edited by hand in the state database): the
    sender makes the row a dead letter saying why and sends the rest of its batch; a preview shows
    why instead of a body."""

    text: str
    reason: str


def decode_stored(text: str) -> Any:
    """A stored payload decoded, or an :class:`UndecodablePayload` saying why it cannot be: one such
    row must not stop every claim (it would be claimed again, first, by each one) nor every preview."""
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        return UndecodablePayload(text, f"{type(exc).__name__}: {str(exc)[:300]}")


def _decoded(rows: Sequence[Any], lease: str | None = None) -> list[ClaimedItem]:
    """The rows as items, their payloads decoded (:func:`decode_stored`); the text kept where it decodes."""
    items = []
    for id_, key, kind, text, attempts in rows:
        payload = decode_stored(text)
        stored = None if isinstance(payload, UndecodablePayload) else text
        items.append(ClaimedItem(id_, key, kind, payload, attempts, lease, stored))
    return items


def _items(conn: Connection, condition: Any, *, limit: int | None, lease: str | None = None) -> list[ClaimedItem]:
    """The rows meeting ``condition``, in queue order, their payloads decoded (:func:`_decoded`)."""
    return _decoded(_rows(conn, condition, limit=limit), lease)


def _held_by(lease: str | None, now: dt.datetime) -> Any:
    """The rows a lease holder may mark: those still carrying its token; without a token (a row read
    back, not claimed: verification, a person), only rows no live lease holds."""
    if lease is not None:
        return outbox.c.lease_owner == lease
    return or_(outbox.c.lease_owner.is_(None), outbox.c.lease_expires_at <= now)


_OUTBOX_COLUMNS = ("key", "kind", "payload", "status", "attempts", "sends", "next_attempt_at", "created_at", "run_id",
                   "metric", "event_time")


def event_facts(payload: Any) -> tuple[str | None, dt.datetime | None]:
    """What verification reads Klaviyo back by: an event payload's ``metric`` (its first 128
    characters) and its ``time`` (ISO 8601 with an offset) as naive UTC; None for what a payload lacks
    (a suppression has neither) or cannot be read (a bad time, which the quality gate dead-letters)."""
    metric, when = _facts(payload)
    return (None if metric is None else metric[:128]), when


def _facts(payload: Any) -> tuple[str | None, dt.datetime | None]:
    """:func:`event_facts` with the metric whole."""
    if not isinstance(payload, dict):
        return None, None
    metric = payload.get("metric")
    metric = metric if isinstance(metric, str) else None
    text = payload.get("time")
    if not isinstance(text, str):
        return metric, None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return metric, None
    if parsed.tzinfo is None:
        return metric, None
    return metric, parsed.astimezone(dt.UTC).replace(tzinfo=None)


def enqueue(conn: Connection, items: Iterable[OutboxItem], *, run_id: str | None = None) -> set[str]:
    """Add outbox rows; a key already queued (or sent) is skipped, which makes every step re-runnable.

    Returns the keys that were new."""
    now = bound(conn, outbox.c.created_at, utcnow())
    event_time = binder(conn, outbox.c.event_time)
    rows = []
    for item in items:
        metric, when = item.event_facts()
        rows.append((item.key, item.kind, item.stored_text, PENDING, 0, 0, now, now, run_id, metric, event_time(when)))
    return insert_ignoring_duplicates(conn, outbox, _OUTBOX_COLUMNS, rows, "key")


def existing_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are already in the outbox (queued, sent or dead)."""
    return existing(conn, outbox.c.key, keys)


def _claimable(now: dt.datetime):
    return and_(
        outbox.c.status == PENDING,
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at <= now),
    )


def claim(
    engine: Engine,
    *,
    limit: int,
    lease_seconds: int,
    kinds: Sequence[str] | None = None,
    owner: str | None = None,
    now: dt.datetime | None = None,
    decode: bool = True,
) -> list[ClaimedItem]:
    """Lease up to ``limit`` due pending rows to this worker, oldest first.

    ``decode=False``: the rows as stored (``payload`` None, ``text`` set), for a caller that decodes
    each row when it reads it (the sender: row by row as it validates, call by call as it builds).

    On PostgreSQL and MariaDB/MySQL the candidates are locked ``FOR UPDATE SKIP LOCKED`` so several
    workers take disjoint batches without waiting on each other. On every backend the lease itself
    is an UPDATE guarded by the claimable condition and stamped with a fresh token, and only the
    rows carrying that token are returned: two workers can never hold the same row.
    """
    now = now or utcnow()
    token = f"{owner or 'worker'}:{uuid.uuid4().hex[:16]}"[:64]  # owner: a run id (lease_prefix) or a worker name
    expires = now + dt.timedelta(seconds=lease_seconds)
    condition = _claimable(now)
    if kinds:
        condition = and_(condition, outbox.c.kind.in_(list(kinds)))
    candidates = select(outbox.c.id).where(condition).order_by(outbox.c.id).limit(limit)
    if backend(engine) in {"postgresql", "mysql"}:
        candidates = candidates.with_for_update(skip_locked=True)
    with engine.begin() as conn:
        ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids), condition)
            .values(lease_owner=token, lease_expires_at=expires)
        )
        # Found by their ids' range (the primary key), not the token alone: no index holds it, and
        # SQLite read the whole outbox for it (~60 ms at 217,000 rows).
        rows = _rows(conn, and_(outbox.c.id.between(ids[0], ids[-1]), outbox.c.lease_owner == token), limit=None)
    if not decode:
        return [ClaimedItem(id_, key, kind, None, attempts, token, text) for id_, key, kind, text, attempts in rows]
    # Decoded after the commit: the rows carry this claim's token, so they are ours either way, and on
    # SQLite the write lock is held to the commit. Decoding 20,000 payloads inside it (~0.3 s beside
    # the store's steps) held up the recording of the answers in flight, and so the next posts
    # (benchmark 8's request timeline: an outcome recorded in 0.37 s, 0.06 s once decoded here).
    try:
        return _decoded(rows, token)
    except BaseException:
        # Stopped while decoding (a signal, memory): the claim leases nothing, as when the decoding
        # rolled its transaction back.
        with suppress(Exception), engine.begin() as conn:
            release(conn, [row[0] for row in rows], lease=token)
        raise


def lease_prefix(run_id: str) -> str:
    """What every lease token of a run's claims starts with (the run's claims use it as ``owner``)."""
    return f"{run_id}:"


def renew_leases(conn: Connection, run_id: str, *, lease_seconds: int, now: dt.datetime | None = None) -> int:
    """The run's heartbeat: every pending row one of its claims holds is its own for ``lease_seconds``
    more. A claim another worker took over carries that worker's token, and is not touched."""
    now = now or utcnow()
    return conn.execute(
        update(outbox)
        .where(outbox.c.status == PENDING, outbox.c.lease_owner.startswith(lease_prefix(run_id), autoescape=True))
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
    ).rowcount


def release_run_leases(conn: Connection, run_id: str) -> int:
    """Hand back every row a run's claims still hold (the run was stopped, or died)."""
    return conn.execute(
        update(outbox)
        .where(outbox.c.status == PENDING, outbox.c.lease_owner.startswith(lease_prefix(run_id), autoescape=True))
        .values(lease_owner=None, lease_expires_at=None)
    ).rowcount


def waiting_for_retry(conn: Connection) -> tuple[int, dt.datetime | None]:
    """Pending rows a send already failed for (they wait for their next attempt), or that wait with
    such a row (an order's lines handed back to wait for their Placed Order: :func:`defer` leaves its
    reason, and no failed attempt), and the earliest time one of them is due again."""
    count, due = conn.execute(
        select(func.count(), func.min(outbox.c.next_attempt_at))
        .where(outbox.c.status == PENDING, or_(outbox.c.attempts > 0, outbox.c.last_error.is_not(None)))
    ).one()
    return count, due


def leased_count(conn: Connection) -> int:
    """Pending rows under a lease, live or not."""
    return conn.execute(select(func.count()).select_from(outbox)
                        .where(outbox.c.status == PENDING, outbox.c.lease_owner.is_not(None))).scalar_one()


def mark_sent(conn: Connection, ids: Sequence[int], *, run_id: str | None = None, lease: str | None = None) -> int:
    """Klaviyo accepted these rows. With ``lease``, only rows that claim still holds are marked;
    returns how many were."""
    now = utcnow()
    marked = 0
    for chunk in chunks(ids, IN_LIST_SIZE):
        condition = outbox.c.id.in_(chunk) if lease is None else and_(outbox.c.id.in_(chunk), _held_by(lease, now))
        marked += conn.execute(
            update(outbox)
            .where(condition)
            .values(status=SENT, sent_at=now, sends=outbox.c.sends + 1, checked_at=None, lease_owner=None,
                    lease_expires_at=None, last_error=None, run_id=run_id)
        ).rowcount
    return marked


def mark_retry(conn: Connection, item_id: int, *, attempts: int, error: str, next_attempt_at: dt.datetime,
               lease: str | None = None) -> bool:
    """Due again at ``next_attempt_at``; with ``lease``, only while that claim holds the row.
    Returns whether it was marked."""
    condition = outbox.c.id == item_id
    if lease is not None:
        condition = and_(condition, _held_by(lease, utcnow()))
    return bool(conn.execute(
        update(outbox)
        .where(condition)
        .values(
            attempts=attempts,
            last_error=error[:4000],
            next_attempt_at=next_attempt_at,
            lease_owner=None,
            lease_expires_at=None,
        )
    ).rowcount)


class LeadState(NamedTuple):
    """Where a unit's lead stands (:func:`lead_states`): what the rows waiting on it go by."""

    status: str
    next_attempt_at: dt.datetime
    #: When the live claim holding it lapses; None when no live claim holds it.
    leased_until: dt.datetime | None

    @property
    def accepted(self) -> bool:
        """Klaviyo took it (sent, or read back since)."""
        return self.status in (SENT, VERIFIED)

    @property
    def dead(self) -> bool:
        return self.status == DEAD


def lead_states(conn: Connection, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, LeadState]:
    """The status of the outbox rows with these keys (absent: not queued), one query per thousand keys."""
    now = now or utcnow()
    found: dict[str, LeadState] = {}
    for chunk in chunks(sorted(set(keys)), IN_LIST_SIZE):
        rows = conn.execute(select(outbox.c.key, outbox.c.status, outbox.c.next_attempt_at, outbox.c.lease_owner,
                                   outbox.c.lease_expires_at).where(outbox.c.key.in_(chunk)))
        for key, status, due, owner, expires in rows:
            live = owner is not None and expires is not None and expires > now
            found[key] = LeadState(status, due, expires if live else None)
    return found


def defer(conn: Connection, ids: Sequence[int], *, until: dt.datetime, why: str, lease: str | None = None) -> int:
    """Hand leased rows back, due again at ``until`` and not counted as attempted (rows that wait for
    another row: an order's lines for its Placed Order); with ``lease``, only those that claim still
    holds. Returns how many were."""
    deferred = 0
    now = utcnow()
    for chunk in chunks(list(ids), IN_LIST_SIZE):
        condition = outbox.c.id.in_(chunk) if lease is None else and_(outbox.c.id.in_(chunk), _held_by(lease, now))
        deferred += conn.execute(
            update(outbox).where(condition, outbox.c.status == PENDING)
            .values(lease_owner=None, lease_expires_at=None, next_attempt_at=until, last_error=why[:4000])
        ).rowcount
    return deferred


def set_dead(conn: Connection, item: ClaimedItem, *, reason: str) -> bool:
    """Take a row out of the queue for good (its dead letter is written by ``dead_letters.mark_dead``).

    Only a row still queued or sent, and held by ``item``'s claim (a row read back without a claim:
    held by no live lease): a row another worker is sending right now is not this caller's to
    give up on. Returns whether it was marked."""
    done = conn.execute(
        update(outbox)
        .where(outbox.c.id == item.id, outbox.c.status.in_([PENDING, SENT]), _held_by(item.lease, utcnow()))
        .values(status=DEAD, last_error=reason[:4000], lease_owner=None, lease_expires_at=None, attempts=item.attempts)
    ).rowcount
    return bool(done)


def release(conn: Connection, ids: Sequence[int], *, lease: str | None = None) -> int:
    """Hand leased rows back untouched (an auth error, a signal: nothing counts as attempted); with
    ``lease``, only those that claim still holds. Returns how many were handed back."""
    released = 0
    now = utcnow()
    for chunk in chunks(list(ids), IN_LIST_SIZE):
        condition = outbox.c.id.in_(chunk) if lease is None else and_(outbox.c.id.in_(chunk), _held_by(lease, now))
        released += conn.execute(
            update(outbox).where(condition).values(lease_owner=None, lease_expires_at=None)
        ).rowcount
    return released


def requeue_dead(conn: Connection, keys: Sequence[str]) -> int:
    """Put the dead rows with these keys back in the queue, due now, their failed attempts and their
    sends reset (a replayed row gets the whole retry and verification budget again)."""
    now = utcnow()
    requeued = 0
    for chunk in chunks(keys, IN_LIST_SIZE):
        requeued += conn.execute(
            update(outbox)
            .where(outbox.c.key.in_(chunk), outbox.c.status == DEAD)
            .values(status=PENDING, attempts=0, sends=0, checked_at=None, next_attempt_at=now, last_error=None)
        ).rowcount
    return requeued


def outbox_counts(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(outbox.c.kind, outbox.c.status, func.count().label("rows"))
        .group_by(outbox.c.kind, outbox.c.status)
        .order_by(outbox.c.kind, outbox.c.status)
    )
    return [dict(r._mapping) for r in rows]


def stuck_leases(conn: Connection, now: dt.datetime | None = None) -> int:
    """Pending rows still under a lease that has already expired (a worker died holding them)."""
    now = now or utcnow()
    return conn.execute(
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.status == PENDING, outbox.c.lease_expires_at.is_not(None), outbox.c.lease_expires_at <= now)
    ).scalar_one()


def pending_count(conn: Connection) -> int:
    """Rows still to send (due now or later)."""
    return conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status == PENDING)).scalar_one()


def pending_rows(conn: Connection, *, limit: int, after_id: int = 0) -> list[ClaimedItem]:
    """Pending rows in queue order, without claiming them (previews and checks that send nothing)."""
    return _items(conn, and_(outbox.c.status == PENDING, outbox.c.id > after_id), limit=limit)


def iter_pending(engine: Engine, *, chunk_size: int) -> Iterator[list[ClaimedItem]]:
    """Every pending row, ``chunk_size`` at a time, each page its own short read."""
    after_id = 0
    while True:
        with engine.connect() as conn:
            page = pending_rows(conn, limit=chunk_size, after_id=after_id)
        if not page:
            return
        yield page
        after_id = page[-1].id

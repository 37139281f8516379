"""Delivery: which outbox rows Klaviyo is proven to hold. Delivered means verified, read back from
Klaviyo; a 2xx alone only makes a row ``sent`` ("submitted for processing").

The verify step asks for the sent rows due for a check (:func:`due_for_verification`) and records
what it found: :func:`mark_delivered` (the one definition of "this key is delivered"),
:func:`mark_missing` (looked, not there yet), :func:`requeue_missing` (to be sent again). The dead
letter of a row that never appeared is written by :func:`kl_sync.state.dead_letters.mark_dead`.
:func:`delivery_counts` is what ``kl-sync status`` shows per kind and metric. Delivery settles dead
letters: :func:`mark_delivered` resolves a delivered key's letters, :func:`record_accepted` those of
a kind nothing reads back once Klaviyo accepted it (and notes a replayed key re-sent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import dumps, loads, utcnow
from kl_sync.state.dead_letters import mark_replayed, note_resent, rebuilds, resolve_letters, unit_of, unsettled_letters
from kl_sync.state.outbox import ClaimedItem, OutboxItem, requeue_dead
from kl_sync.state.tables import DEAD, PENDING, SENT, VERIFIED, outbox


@dataclass(frozen=True)
class DueRow:
    """A sent row due for verification: what a verifier looks Klaviyo up by (no payload)."""

    id: int
    key: str
    kind: str
    metric: str | None
    #: The event's own time, naive UTC (None for a row that is no event).
    event_time: dt.datetime | None
    #: Times Klaviyo accepted it so far.
    sends: int
    sent_at: dt.datetime


@dataclass(frozen=True)
class Spread:
    """The rows of one metric in the outbox: how many, the first and the last event time."""

    rows: int
    first: dt.datetime
    last: dt.datetime


def due_for_verification(
    conn: Connection,
    *,
    sent_before: dt.datetime,
    kinds: Collection[str],
    sent_since: dt.datetime | None = None,
    after_id: int = 0,
    limit: int = 50_000,
) -> list[DueRow]:
    """Sent rows of ``kinds`` sent no later than ``sent_before`` (and not before ``sent_since``), in
    queue order after ``after_id``."""
    condition = and_(outbox.c.status == SENT, outbox.c.sent_at <= sent_before, outbox.c.kind.in_(list(kinds)),
                     outbox.c.id > after_id)
    if sent_since is not None:
        condition = and_(condition, outbox.c.sent_at >= sent_since)
    query = (
        select(outbox.c.id, outbox.c.key, outbox.c.kind, outbox.c.metric, outbox.c.event_time, outbox.c.sends,
               outbox.c.sent_at)
        .where(condition).order_by(outbox.c.id).limit(limit)
    )
    return [DueRow(*row) for row in conn.execute(query)]


def spreads(conn: Connection, metrics: Collection[str]) -> dict[str, Spread]:
    """Per metric, the rows of it kl-sync queued: how a verifier knows about how many events lie in a
    stretch of time it would rather not read. Every status counts (the few still pending or dead
    barely move an estimate), so the index on (metric, event_time) answers it alone."""
    if not metrics:
        return {}
    rows = conn.execute(
        select(outbox.c.metric, func.count(), func.min(outbox.c.event_time), func.max(outbox.c.event_time))
        .where(outbox.c.metric.in_(list(metrics)), outbox.c.event_time.is_not(None))
        .group_by(outbox.c.metric)
    )
    return {metric: Spread(count, first, last) for metric, count, first, last in rows}


def claimed_rows(conn: Connection, ids: Sequence[int]) -> list[ClaimedItem]:
    """The rows with ``ids``, payloads decoded (for a verifier that needs more than the columns, and
    for dead letters, which keep the payload)."""
    found: list[ClaimedItem] = []
    for chunk in chunks(ids, IN_LIST_SIZE):
        rows = conn.execute(
            select(outbox.c.id, outbox.c.key, outbox.c.kind, outbox.c.payload, outbox.c.attempts)
            .where(outbox.c.id.in_(chunk)).order_by(outbox.c.id)
        )
        found += [ClaimedItem(id_, key, kind, loads(payload), attempts) for id_, key, kind, payload, attempts in rows]
    return found


def mark_delivered(conn: Connection, keys: Sequence[str], *, run_id: str | None = None,
                   now: dt.datetime | None = None) -> int:
    """These keys are delivered: Klaviyo holds them. Sent rows become ``verified`` and the keys' dead
    letters are resolved (by ``run_id``): whatever sent a key, its delivery closes them. Returns how
    many rows changed (a key already verified, or re-queued meanwhile, is left as it is)."""
    now = now or utcnow()
    changed = 0
    for chunk in chunks(keys, IN_LIST_SIZE):
        changed += conn.execute(
            update(outbox).where(outbox.c.key.in_(chunk), outbox.c.status == SENT)
            .values(status=VERIFIED, verified_at=now, checked_at=None)
        ).rowcount
    _resolve_letters_of(conn, keys, run_id=run_id, now=now)
    return changed


def record_accepted(conn: Connection, keys: Sequence[str], *, unverifiable: Collection[str] = (),
                    run_id: str | None = None, now: dt.datetime | None = None) -> None:
    """Klaviyo accepted these keys (a 2xx). A key of a kind nothing reads back (``unverifiable``:
    profile imports, whose job kl-sync polls) is as delivered as it will ever be, so its letters are
    resolved now; the others' replayed letters note the re-send and resolve when it is verified."""
    now = now or utcnow()
    note_resent(conn, [key for key in keys if key not in unverifiable], now=now)
    _resolve_letters_of(conn, [key for key in keys if key in unverifiable], run_id=run_id, now=now)


def _resolve_letters_of(conn: Connection, keys: Sequence[str], *, run_id: str | None, now: dt.datetime) -> int:
    """Resolve the unsettled letters that delivering ``keys`` settles: a letter naming the key itself,
    or one the key is a later build of (:func:`~kl_sync.state.dead_letters.rebuilds`: its store row
    rebuilt once fixed) when its row was queued after the letter. An older row of the same unit
    delivered meanwhile proves nothing about the letter's cause."""
    letters = unsettled_letters(conn, keys)
    if not letters:
        return 0
    delivered = set(keys)
    by_unit: dict[str, list[str]] = {}
    for key in delivered:
        by_unit.setdefault(unit_of(key), []).append(key)
    settled = [letter_id for letter_id, key, _ in letters if key in delivered]
    later = {letter_id: (key, created, [k for k in by_unit.get(unit_of(key), ()) if rebuilds(key, k)])
             for letter_id, key, created in letters if key not in delivered}
    queued: dict[str, dt.datetime] = {}
    for chunk in chunks(sorted({k for _, _, builds in later.values() for k in builds}), IN_LIST_SIZE):
        queued.update(conn.execute(select(outbox.c.key, outbox.c.created_at).where(outbox.c.key.in_(chunk))).all())
    settled += [letter_id for letter_id, (_, created, builds) in later.items()
                if any(k in queued and queued[k] >= created for k in builds)]
    return resolve_letters(conn, settled, run_id=run_id, now=now)


def outbox_statuses(conn: Connection, keys: Sequence[str]) -> dict[str, str]:
    """The outbox status of each of ``keys`` it holds."""
    found: dict[str, str] = {}
    for chunk in chunks(sorted(set(keys)), IN_LIST_SIZE):
        found.update(conn.execute(select(outbox.c.key, outbox.c.status).where(outbox.c.key.in_(chunk))).all())
    return found


def dead_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the outbox holds dead."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(keys)), IN_LIST_SIZE):
        found.update(conn.execute(select(outbox.c.key).where(outbox.c.key.in_(chunk), outbox.c.status == DEAD)).scalars())
    return found


def requeue_rebuilt(conn: Connection, items: Sequence[OutboxItem], *, changed_only: bool,
                    run_id: str | None = None) -> set[str]:
    """A step re-read rows whose keys are in the outbox already (``sync --from-start``, a lookback):
    those it holds dead are revived with the payloads just built from the store's current data, and
    their open letters become ``replayed`` by ``run_id``. With ``changed_only``, only a payload that
    differs from the dead one (its row was fixed): an unchanged row would fail the same way again.
    A row queued, sent or verified is never touched. Returns the keys revived. One query per
    thousand keys when none is dead."""
    if not items:
        return set()
    stored: dict[str, str] = {}
    for chunk in chunks(sorted({item.key for item in items}), IN_LIST_SIZE):
        stored.update(conn.execute(select(outbox.c.key, outbox.c.payload)
                                   .where(outbox.c.key.in_(chunk), outbox.c.status == DEAD)).all())
    if not stored:
        return set()
    rebuilt = [item for item in items if item.key in stored
               and not (changed_only and _same_payload(item.stored_text, stored[item.key]))]
    revived = revive_rebuilt(conn, rebuilt, run_id=run_id)
    mark_replayed(conn, sorted(revived), run_id=run_id)
    return revived


def _same_payload(rebuilt: str, dead: str) -> bool:
    """Whether a payload just built is the dead row's. Texts that differ are compared as the state's
    stable JSON writes each once decoded: a row queued before orjson wrote the payload text holds
    ``1e-05`` where it now holds ``0.00001`` (kl_sync.state.codec.encode_payload), and is not a fixed
    row for that; but ``true`` fixed to ``1``, or NaN to null, is (decoded values alone would hide
    the first: ``True == 1`` in Python)."""
    if rebuilt == dead:
        return True
    try:
        return dumps(loads(rebuilt)) == dumps(loads(dead))
    except ValueError:  # the dead row's text was edited into something that is not JSON
        return False


def revive_rebuilt(conn: Connection, items: Sequence[OutboxItem], *, run_id: str | None = None) -> set[str]:
    """Put dead outbox rows back in the queue with the payloads rebuilt for them from the store's
    current data (a replay, a re-read from the start), their failed attempts and sends reset. A row
    that is not dead (queued, sent, verified) is never touched: nothing is sent twice. Returns the
    keys revived."""
    now = utcnow()
    revived: set[str] = set()
    for item in items:
        metric, when = item.event_facts()
        if conn.execute(
            update(outbox).where(outbox.c.key == item.key, outbox.c.status == DEAD)
            .values(payload=item.stored_text, metric=metric, event_time=when,
                    status=PENDING, attempts=0, sends=0, checked_at=None, next_attempt_at=now, last_error=None,
                    lease_owner=None, lease_expires_at=None, run_id=run_id)
        ).rowcount:
            revived.add(item.key)
    return revived


def revive_dead(conn: Connection, keys: Sequence[str]) -> list[str]:
    """Put the dead outbox rows of these keys back in the queue (their failed attempts and sends
    reset); returns the keys revived. A row sent or verified is never touched: nothing is sent twice."""
    dead: list[str] = []
    for chunk in chunks(sorted(set(keys)), IN_LIST_SIZE):
        dead += conn.execute(select(outbox.c.key).where(outbox.c.key.in_(chunk), outbox.c.status == DEAD)).scalars()
    requeue_dead(conn, dead)
    return dead


def close_superseded(conn: Connection, superseded: dict[str, str], *, now: dt.datetime | None = None) -> int:
    """Close consent rows a later one replaced (``{old key: new key}``): a suppression not yet sent or
    proven when the customer is to be unsuppressed, or the other way round. Sending or re-sending
    it would undo the newer request; nothing is left to prove about it, so it counts as verified,
    its ``last_error`` naming the row that replaced it."""
    now = now or utcnow()
    closed = 0
    for old, new in superseded.items():
        closed += conn.execute(
            update(outbox).where(outbox.c.key == old, outbox.c.status.in_([PENDING, SENT]))
            .values(status=VERIFIED, verified_at=now, lease_owner=None, lease_expires_at=None,
                    last_error=f"superseded by {new}"[:1000])
        ).rowcount
    return closed


def mark_missing(conn: Connection, ids: Sequence[int], *, now: dt.datetime | None = None) -> None:
    """Verification looked for these sent rows and did not find them (yet)."""
    now = now or utcnow()
    for chunk in chunks(ids, IN_LIST_SIZE):
        conn.execute(update(outbox).where(outbox.c.id.in_(chunk), outbox.c.status == SENT).values(checked_at=now))


def requeue_missing(conn: Connection, rows: Sequence[DueRow], *, now: dt.datetime | None = None) -> list[int]:
    """Put sent rows that never appeared back in the queue, due now, to be sent again (their
    unique_id makes that safe). A row sent again meanwhile (its ``sends`` moved on) is left alone.
    Returns the ids re-queued."""
    now = now or utcnow()
    requeued = []
    for row in rows:
        done = conn.execute(
            update(outbox).where(outbox.c.id == row.id, outbox.c.status == SENT, outbox.c.sends == row.sends)
            .values(status=PENDING, next_attempt_at=now, checked_at=now, lease_owner=None, lease_expires_at=None)
        ).rowcount
        if done:
            requeued.append(row.id)
    return requeued


#: The columns of :func:`delivery_counts`, in a row's order through the outbox.
DELIVERY_COLUMNS = ("queued", "sent", "verified", "missing", "dead")


def delivery_counts(conn: Connection) -> list[dict[str, Any]]:
    """Per kind and metric (None for a kind that is no event), how many rows are queued, sent and
    not yet verified, verified, missing (sent, looked for, not found yet) and dead."""
    missed = case((outbox.c.checked_at.is_(None), 0), else_=1)
    rows = conn.execute(
        select(outbox.c.kind, outbox.c.metric, outbox.c.status, missed, func.count())
        .group_by(outbox.c.kind, outbox.c.metric, outbox.c.status, missed)
    )
    column = {PENDING: "queued", SENT: "sent", VERIFIED: "verified", DEAD: "dead"}
    table: dict[tuple[str, str | None], dict[str, Any]] = {}
    for kind, metric, status, was_missed, count in rows:
        entry = table.setdefault((kind, metric), {"kind": kind, "metric": metric, **dict.fromkeys(DELIVERY_COLUMNS, 0)})
        name = "missing" if status == SENT and was_missed else column.get(status, status)
        entry[name] = entry.get(name, 0) + count
    return [table[key] for key in sorted(table, key=lambda key: (key[0], key[1] or ""))]

"""The ``dead_letters`` table: what could not become a payload or could not be sent, with the reason.

A step's bad store row is added here directly; an outbox row the sender gives up on is marked dead in
the outbox and lettered here in one go (:func:`mark_dead`), and a replay puts it back in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import dumps, utcnow
from kl_sync.state.outbox import ClaimedItem, requeue_dead, set_dead
from kl_sync.state.tables import dead_letters


def mark_dead(conn: Connection, item: ClaimedItem, *, step: str, reason: str, run_id: str | None = None) -> None:
    """Give up on an outbox row: it leaves the queue and becomes a dead letter with the reason."""
    set_dead(conn, item, reason=reason)
    add_dead_letter(conn, key=item.key, step=step, kind=item.kind, reason=reason, original=item.payload, run_id=run_id)


def add_dead_letter(
    conn: Connection,
    *,
    key: str,
    step: str,
    reason: str,
    original: Any,
    kind: str | None = None,
    run_id: str | None = None,
) -> None:
    add_dead_letters(conn, [dict(key=key, step=step, reason=reason, original=original, kind=kind)], run_id=run_id)


def dead_letter_keys(conn: Connection, keys: Sequence[str], *, step: str) -> set[str]:
    """Which of ``keys`` already have an open (not replayed) dead letter from ``step``."""
    found: set[str] = set()
    for chunk in chunks(keys, IN_LIST_SIZE):
        found.update(
            conn.execute(
                select(dead_letters.c.key).where(
                    dead_letters.c.key.in_(chunk), dead_letters.c.step == step, dead_letters.c.replayed_at.is_(None)
                )
            ).scalars()
        )
    return found


def add_dead_letters(conn: Connection, letters: Sequence[dict[str, Any]], *, run_id: str | None = None) -> None:
    if not letters:
        return
    now = utcnow()
    conn.execute(
        insert(dead_letters),
        [
            {
                "key": letter["key"][:255],
                "step": letter["step"],
                "kind": letter.get("kind"),
                "reason": letter["reason"],
                "original": dumps(letter.get("original")),
                "created_at": now,
                "run_id": run_id,
            }
            for letter in letters
        ],
    )


def list_dead_letters(conn: Connection, *, include_replayed: bool = False, run_id: str | None = None) -> list[dict[str, Any]]:
    query = select(dead_letters).order_by(dead_letters.c.id)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    if run_id:
        query = query.where(dead_letters.c.run_id == run_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def replay_dead_letters(conn: Connection, keys: Sequence[str] | None = None) -> int:
    """Put dead outbox rows back in the queue (all of them, or those with ``keys``).

    Only rows that reached the outbox can be replayed; a store row that could not become a payload
    (parse / orders dead letters) is fixed in the store and re-read with ``--from-start``.
    """
    now = utcnow()
    query = select(dead_letters.c.key).where(dead_letters.c.replayed_at.is_(None))
    if keys:
        query = query.where(dead_letters.c.key.in_(list(keys)))
    wanted = sorted(set(conn.execute(query).scalars()))
    requeued = requeue_dead(conn, wanted)
    for chunk in chunks(wanted, IN_LIST_SIZE):
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.key.in_(chunk), dead_letters.c.replayed_at.is_(None))
            .values(replayed_at=now)
        )
    return requeued

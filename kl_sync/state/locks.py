"""The ``locks`` table: named locks in the state database, one implementation for SQLite,
PostgreSQL and MariaDB alike (no advisory locks: SQLite has none, and a session lock would die
with a pooled connection rather than with its run).

A lock is a row: its name is the primary key, so of two runs inserting it at once exactly one
succeeds, on every backend. The holder renews ``heartbeat_at`` while it lives (the pipeline's
heartbeat thread); a lock whose heartbeat is older than ``stale_after`` belongs to a run that died
(SIGKILL, a lost host) and the next run takes it over in one guarded UPDATE.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from kl_sync.state.codec import utcnow
from kl_sync.state.tables import locks

#: The lock of the store-reading steps (parse, orders, customers, suppress): one run at a time.
STORE_LOCK = "store"


class LockHolder(NamedTuple):
    """Who holds a lock another run asked for."""

    run_id: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


def take_lock(engine: Engine, name: str, run_id: str, *, stale_after: dt.timedelta) -> LockHolder | None:
    """Take lock ``name`` for ``run_id``: None when this run holds it now, else who does.

    A lock this run already holds is taken again (renewed); one whose heartbeat is older than
    ``stale_after`` is taken over from its dead holder."""
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(insert(locks).values(name=name, run_id=run_id, acquired_at=now, heartbeat_at=now))
        return None
    except IntegrityError:
        pass  # held (or being taken) by a run: is it this one, or dead?
    with engine.begin() as conn:
        # Guarded by the holder's heartbeat: of two runs taking over a dead run's lock, the second
        # finds the heartbeat the first just wrote, and matches nothing.
        taken = conn.execute(
            update(locks)
            .where(locks.c.name == name, or_(locks.c.run_id == run_id, locks.c.heartbeat_at < now - stale_after))
            .values(run_id=run_id, acquired_at=now, heartbeat_at=now)
        ).rowcount
        if taken:
            return None
        row = conn.execute(select(locks.c.run_id, locks.c.acquired_at, locks.c.heartbeat_at)
                           .where(locks.c.name == name)).first()
    if row is None:  # released between the insert and the update: try once more
        return take_lock(engine, name, run_id, stale_after=stale_after)
    return LockHolder(row.run_id, row.acquired_at, row.heartbeat_at)


def renew_lock(engine: Engine, name: str, run_id: str) -> bool:
    """The holder's heartbeat; False when the lock is no longer this run's (taken over as stale)."""
    with engine.begin() as conn:
        return bool(conn.execute(
            update(locks).where(locks.c.name == name, locks.c.run_id == run_id).values(heartbeat_at=utcnow())
        ).rowcount)


def release_lock(engine: Engine, name: str, run_id: str) -> None:
    """Let go of ``name`` if this run still holds it."""
    with engine.begin() as conn:
        conn.execute(delete(locks).where(locks.c.name == name, locks.c.run_id == run_id))


def release_locks_of(engine: Engine, run_ids: list[str]) -> None:
    """Let go of every lock these (dead) runs held."""
    if run_ids:
        with engine.begin() as conn:
            conn.execute(delete(locks).where(locks.c.run_id.in_(run_ids)))


def lock_holder(engine: Engine, name: str) -> LockHolder | None:
    with engine.connect() as conn:
        row = conn.execute(select(locks.c.run_id, locks.c.acquired_at, locks.c.heartbeat_at)
                           .where(locks.c.name == name)).first()
    return None if row is None else LockHolder(row.run_id, row.acquired_at, row.heartbeat_at)

"""The ``runs`` table: every sync run, its steps, its outcome and its counts."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from kl_sync.state.codec import dumps, utcnow
from kl_sync.state.tables import runs


def start_run(conn: Connection, *, steps: Sequence[str], dry_run: bool = False, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    now = utcnow()
    conn.execute(
        insert(runs).values(id=run_id, started_at=now, heartbeat_at=now, status="running", steps=",".join(steps),
                            dry_run=dry_run)
    )
    return run_id


def heartbeat(conn: Connection, run_id: str) -> None:
    """The run is alive (its heartbeat thread, every few seconds while it runs)."""
    conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status == "running").values(heartbeat_at=utcnow()))


def abandon_dead_runs(conn: Connection, *, silent_for: dt.timedelta, now: dt.datetime | None = None) -> list[str]:
    """Record ``abandoned`` every run still ``running`` whose heartbeat stopped more than
    ``silent_for`` ago (it was killed, or its host died); returns their ids."""
    now = now or utcnow()
    cutoff = now - silent_for
    dead = list(conn.execute(
        select(runs.c.id).where(runs.c.status == "running",
                                func.coalesce(runs.c.heartbeat_at, runs.c.started_at) < cutoff)
    ).scalars())
    for run_id in dead:
        conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.status == "running")
            .values(status="abandoned", finished_at=now,
                    error=f"its heartbeat stopped for more than {int(silent_for.total_seconds())} s: the run died")
        )
    return dead


def running_runs(conn: Connection) -> list[str]:
    return list(conn.execute(select(runs.c.id).where(runs.c.status == "running")).scalars())


def finish_run(conn: Connection, run_id: str, *, status: str, counts: dict[str, Any], error: str | None = None) -> None:
    conn.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(finished_at=utcnow(), status=status, counts=dumps(counts), error=error)
    )


def recent_runs(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    rows = conn.execute(select(runs).order_by(runs.c.started_at.desc()).limit(limit))
    out = []
    for r in rows:
        row = dict(r._mapping)
        row["counts"] = json.loads(row["counts"]) if row["counts"] else {}
        out.append(row)
    return out

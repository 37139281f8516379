"""Operations on the state database: cursors, the outbox (enqueue / claim / mark), dead letters, runs.

Every function takes a Connection inside the caller's transaction where the caller must commit
several things together (a step's outbox rows, its dead letters and its cursor), and an Engine where
the operation is its own transaction (claiming a batch).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.db import backend, driver_insert
from kl_sync.state.tables import DEAD, PENDING, SENT, cursors, dead_letters, outbox, runs, touched_customers


def utcnow() -> dt.datetime:
    """Naive UTC: what every state timestamp is stored as, on every backend."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# One encoder for every call: ``json.dumps`` with options builds a new JSONEncoder each time, which
# was a tenth of the parse step's time (benchmarks/README.md).
_STABLE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    """Stable JSON for payloads and originals: the same input always gives the same text."""
    return _STABLE_JSON.encode(value)


def loads(text: str) -> Any:
    """Decode a stored payload. orjson decodes ~3× faster than the standard library (a claim decodes
    every payload of its batch); what orjson refuses and ``json`` takes (NaN, integers beyond 64 bits)
    goes to ``json``. Both give equal values."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# ----------------------------------------------------------------------------------------- cursors


def get_cursor(conn: Connection, stream: str) -> list[Any] | None:
    value = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream)).scalar()
    return json.loads(value) if value is not None else None


def set_cursor(conn: Connection, stream: str, value: Sequence[Any]) -> None:
    """Upsert the cursor; callers only ever move it forward, in the transaction of what it covers."""
    text_value = json.dumps([_cursor_value(v) for v in value])
    now = utcnow()
    updated = conn.execute(
        update(cursors).where(cursors.c.stream == stream).values(value=text_value, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(insert(cursors).values(stream=stream, value=text_value, updated_at=now))


def reset_cursor(conn: Connection, stream: str) -> None:
    conn.execute(cursors.delete().where(cursors.c.stream == stream))


def _cursor_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def parse_cursor_datetime(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def all_cursors(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(cursors).order_by(cursors.c.stream))
    return [dict(r._mapping) for r in rows]


# ------------------------------------------------------------------------------------------ outbox


@dataclass(frozen=True)
class OutboxItem:
    key: str
    kind: str
    payload: dict[str, Any]


class ClaimedItem(NamedTuple):
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int


#: Bind parameters per statement: under SQLite's 32,766 and PostgreSQL's 65,535.
_MAX_PARAMS = 30_000


def _bound(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as the driver takes it for ``column`` (on SQLite, timestamps become the text
    SQLAlchemy reads back); for values bound once and repeated on every row of a statement."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if processor is None or value is None else processor(value)


def _insert_ignoring_duplicates(conn: Connection, table: Any, names: Sequence[str], rows: list[tuple[Any, ...]],
                                key: str) -> set[Any]:
    """INSERT rows (tuples of driver-ready values for ``names``) whose ``key`` is new; rows already
    there are left exactly as they are. Returns the keys that were new.

    Drivers' rowcounts for multi-row upserts are unreliable (MySQL counts "found" rows, batched inserts
    report one batch), so PostgreSQL and SQLite return the inserted keys and MySQL counts them up front.
    The statement goes to the driver as written: SQLAlchemy's per-row parameter processing was the
    largest single cost of the parse step (~20 µs a row, benchmarks/README.md).
    """
    if not rows:
        return set()
    kind = backend(conn.engine)
    into, one_row = driver_insert(conn.dialect, table, names)
    quoted_key = conn.dialect.identifier_preparer.quote(key)
    if kind in {"postgresql", "sqlite"}:
        # DO NOTHING … RETURNING names exactly the rows inserted, in the same statement, with no
        # window between a check and the insert.
        per_statement = max(1, _MAX_PARAMS // len(names))
        new: set[Any] = set()
        for batch in chunks(rows, per_statement):
            sql = (into + ", ".join([one_row] * len(batch))
                   + f" ON CONFLICT ({quoted_key}) DO NOTHING RETURNING {quoted_key}")
            new.update(conn.exec_driver_sql(sql, tuple(v for values in batch for v in values)).scalars())
        return new
    position = list(names).index(key)
    new_keys = {values[position] for values in rows} - _existing(conn, table.c[key], [v[position] for v in rows])
    # MySQL has no DO NOTHING (nor RETURNING); a self-assignment is the no-op that does not hide other
    # errors. PyMySQL's executemany sends this as multi-row INSERTs.
    conn.exec_driver_sql(into + one_row + f" ON DUPLICATE KEY UPDATE {quoted_key} = {quoted_key}", rows)
    return new_keys


_OUTBOX_COLUMNS = ("key", "kind", "payload", "status", "attempts", "next_attempt_at", "created_at", "run_id")


def enqueue(conn: Connection, items: Iterable[OutboxItem], *, run_id: str | None = None) -> set[str]:
    """Add outbox rows; a key already queued (or sent) is skipped, which makes every step re-runnable.

    Returns the keys that were new."""
    now = _bound(conn, outbox.c.created_at, utcnow())
    rows = [(item.key, item.kind, dumps(item.payload), PENDING, 0, now, now, run_id) for item in items]
    return _insert_ignoring_duplicates(conn, outbox, _OUTBOX_COLUMNS, rows, "key")


def _existing(conn: Connection, column: Any, values: Sequence[Any]) -> set[Any]:
    found: set[Any] = set()
    for chunk in chunks(values, IN_LIST_SIZE):
        found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
    return found


def existing_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are already in the outbox (queued, sent or dead)."""
    return _existing(conn, outbox.c.key, keys)


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
) -> list[ClaimedItem]:
    """Lease up to ``limit`` due pending rows to this worker, oldest first.

    On PostgreSQL and MariaDB/MySQL the candidates are locked ``FOR UPDATE SKIP LOCKED`` so several
    workers take disjoint batches without waiting on each other. On every backend the lease itself
    is an UPDATE guarded by the claimable condition and stamped with a fresh token, and only the
    rows carrying that token are returned: two workers can never hold the same row.
    """
    now = now or utcnow()
    token = f"{owner or 'worker'}:{uuid.uuid4().hex[:16]}"[:64]
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
        rows = conn.execute(
            select(outbox.c.id, outbox.c.key, outbox.c.kind, outbox.c.payload, outbox.c.attempts)
            .where(outbox.c.lease_owner == token)
            .order_by(outbox.c.id)
        ).all()
        return [ClaimedItem(id_, key, kind, loads(payload), attempts) for id_, key, kind, payload, attempts in rows]


def mark_sent(conn: Connection, ids: Sequence[int], *, run_id: str | None = None) -> None:
    now = utcnow()
    for chunk in chunks(ids, IN_LIST_SIZE):
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(chunk))
            .values(status=SENT, sent_at=now, lease_owner=None, lease_expires_at=None, last_error=None, run_id=run_id)
        )


def mark_retry(conn: Connection, item_id: int, *, attempts: int, error: str, next_attempt_at: dt.datetime) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id)
        .values(
            attempts=attempts,
            last_error=error[:4000],
            next_attempt_at=next_attempt_at,
            lease_owner=None,
            lease_expires_at=None,
        )
    )


def mark_dead(conn: Connection, item: ClaimedItem, *, step: str, reason: str, run_id: str | None = None) -> None:
    """Give up on an outbox row: it leaves the queue and becomes a dead letter with the reason."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == item.id)
        .values(status=DEAD, last_error=reason[:4000], lease_owner=None, lease_expires_at=None, attempts=item.attempts)
    )
    add_dead_letter(conn, key=item.key, step=step, kind=item.kind, reason=reason, original=item.payload, run_id=run_id)


def release(conn: Connection, ids: Sequence[int]) -> None:
    """Hand leased rows back untouched (an auth error stops the run: nothing counts as attempted)."""
    if ids:
        conn.execute(
            update(outbox).where(outbox.c.id.in_(list(ids))).values(lease_owner=None, lease_expires_at=None)
        )


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


# ------------------------------------------------------------------------------- touched customers


def touch_customers(conn: Connection, customer_ids: Iterable[int]) -> None:
    """Remember customers to check against the suppression rule (in the caller's transaction)."""
    now = _bound(conn, touched_customers.c.touched_at, utcnow())
    rows = [(cid, now) for cid in sorted(set(customer_ids))]
    _insert_ignoring_duplicates(conn, touched_customers, ("customer_id", "touched_at"), rows, "customer_id")


def touched_customer_ids(conn: Connection, *, limit: int) -> list[int]:
    query = select(touched_customers.c.customer_id).order_by(touched_customers.c.customer_id).limit(limit)
    return list(conn.execute(query).scalars())


def untouch_customers(conn: Connection, customer_ids: Sequence[int]) -> None:
    for chunk in chunks(customer_ids, IN_LIST_SIZE):
        conn.execute(touched_customers.delete().where(touched_customers.c.customer_id.in_(chunk)))


# ------------------------------------------------------------------------------------ dead letters


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
    requeued = 0
    for chunk in chunks(wanted, IN_LIST_SIZE):
        requeued += conn.execute(
            update(outbox)
            .where(outbox.c.key.in_(chunk), outbox.c.status == DEAD)
            .values(status=PENDING, attempts=0, next_attempt_at=now, last_error=None)
        ).rowcount
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.key.in_(chunk), dead_letters.c.replayed_at.is_(None))
            .values(replayed_at=now)
        )
    return requeued


# -------------------------------------------------------------------------------------------- runs


def start_run(conn: Connection, *, steps: Sequence[str], dry_run: bool = False, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    conn.execute(
        insert(runs).values(id=run_id, started_at=utcnow(), status="running", steps=",".join(steps), dry_run=dry_run)
    )
    return run_id


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

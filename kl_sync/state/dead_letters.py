"""The ``dead_letters`` table: what could not become a payload or could not be sent, with the reason.

A step's bad store row is added here directly; an outbox row the sender gives up on is marked dead in
the outbox and lettered here in one go (:func:`mark_dead`).

A letter's way, in ``status``:

- ``open``: nothing has happened to it yet: a person fixes its cause (the store's row, a suite).
- ``replayed``: its key was rebuilt and queued again (``replayed_at``, by the run ``replayed_run_id``);
  ``resent_at`` once Klaviyo accepted it. Not delivered yet: a replay that fails again leaves a new
  open letter beside it.
- ``resolved``: its key was delivered (``resolved_at``, by the run ``resolved_run_id``), whatever sent
  it: a replay, a later sync, ``--from-start``. :func:`kl_sync.state.delivery.mark_delivered` (the one
  definition of delivered) resolves the letters of what it marks.
- ``discarded``: a person gave up on it (``discarded_at``, with a ``note``).

A letter names the key of its outbox row (``log:<id>``, ``order:<id>:placed``, …) or, for a store row
that could not be built at all, the row's own key (``order:<id>``, ``profile:<customer id>``): its
*unit*, the first two parts of every key built from that row (:func:`unit_of`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import dumps, utcnow
from kl_sync.state.outbox import ClaimedItem, set_dead
from kl_sync.state.tables import dead_letters

OPEN, REPLAYED, RESOLVED, DISCARDED = "open", "replayed", "resolved", "discarded"
STATUSES = (OPEN, REPLAYED, RESOLVED, DISCARDED)
#: Letters whose key is not delivered yet and that nobody discarded.
UNSETTLED = (OPEN, REPLAYED)


def unit_of(key: str) -> str:
    """The store row a key was built from, as a letter of that row names it: ``order:5:item:7`` ->
    ``order:5``, ``profile:3:<stamp>:suppress:<email>`` -> ``profile:3``, ``log:6`` -> ``log:6``."""
    prefix, _, rest = key.partition(":")
    return f"{prefix}:{rest.partition(':')[0]}" if rest else key


#: The change stamp a customer's keys carry (``updated_at`` in ISO 8601), after ``profile:<id>:``.
_STAMP = re.compile(r"^(profile:[^:]+:)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?")


def rebuilds(letter_key: str, key: str) -> bool:
    """Whether ``key``, queued after a letter naming ``letter_key``, is a later build of what the
    letter could not deliver: ``letter_key`` itself, anything built from the row when the letter
    names the row (``order:5`` -> ``order:5:placed``), or the same key of a later change of the row
    (``profile:3:<stamp>`` -> ``profile:3:<later stamp>``: a profile carries the CURRENT attributes)."""
    if key == letter_key:
        return True
    if unit_of(key) != unit_of(letter_key):
        return False
    return letter_key == unit_of(letter_key) or _STAMP.sub(r"\1*", letter_key) == _STAMP.sub(r"\1*", key)


def mark_dead(conn: Connection, item: ClaimedItem, *, step: str, reason: str, run_id: str | None = None) -> bool:
    """Give up on an outbox row: it leaves the queue and becomes a dead letter with the reason.
    Returns False, and writes no letter, when the row is not the caller's to give up on (another
    worker's lease holds it now, or it was delivered meanwhile: ``outbox.set_dead``)."""
    if not set_dead(conn, item, reason=reason):
        return False
    add_dead_letter(conn, key=item.key, step=step, kind=item.kind, reason=reason, original=item.payload, run_id=run_id)
    return True


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
    """Which of ``keys`` already have an unsettled (open or replayed) dead letter from ``step``."""
    found: set[str] = set()
    for chunk in chunks(keys, IN_LIST_SIZE):
        found.update(
            conn.execute(
                select(dead_letters.c.key).where(
                    dead_letters.c.key.in_(chunk), dead_letters.c.step == step, dead_letters.c.status.in_(UNSETTLED)
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
                "unit": unit_of(letter["key"])[:255],
                "step": letter["step"],
                "kind": letter.get("kind"),
                "reason": letter["reason"],
                "original": dumps(letter.get("original")),
                "created_at": now,
                "run_id": run_id,
                "status": OPEN,
            }
            for letter in letters
        ],
    )


@dataclass(frozen=True)
class Selection:
    """Which letters a command means: every condition given must hold (none given: every letter of
    ``statuses``)."""

    keys: Sequence[str] = ()
    #: A part of the reason, case-insensitive.
    reason: str | None = None
    step: str | None = None
    kind: str | None = None
    #: Created at or after (naive UTC).
    since: dt.datetime | None = None
    statuses: Collection[str] = field(default=(OPEN,))

    def condition(self) -> Any:
        clauses = [dead_letters.c.status.in_(list(self.statuses))]
        if self.reason:
            clauses.append(func.lower(dead_letters.c.reason).contains(self.reason.lower(), autoescape=True))
        if self.step:
            clauses.append(dead_letters.c.step == self.step)
        if self.kind:
            clauses.append(dead_letters.c.kind == self.kind)
        if self.since is not None:
            clauses.append(dead_letters.c.created_at >= self.since)
        return and_(*clauses)


def select_letters(conn: Connection, selection: Selection, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The letters of ``selection``, oldest first (keys given: in IN-lists of a thousand)."""
    if not selection.keys:
        query = select(dead_letters).where(selection.condition()).order_by(dead_letters.c.id).limit(limit)
        return [dict(r._mapping) for r in conn.execute(query)]
    found: list[dict[str, Any]] = []
    for chunk in chunks(sorted(set(selection.keys)), IN_LIST_SIZE):
        query = select(dead_letters).where(selection.condition(), dead_letters.c.key.in_(chunk))
        found += [dict(r._mapping) for r in conn.execute(query)]
    found.sort(key=lambda letter: letter["id"])
    return found if limit is None else found[:limit]


def list_dead_letters(conn: Connection, *, include_replayed: bool = False, run_id: str | None = None) -> list[dict[str, Any]]:
    """Open letters (with ``include_replayed``, every letter whatever its status), of one run if given."""
    query = select(dead_letters).order_by(dead_letters.c.id)
    if not include_replayed:
        query = query.where(dead_letters.c.status == OPEN)
    if run_id:
        query = query.where(dead_letters.c.run_id == run_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def mark_replayed(conn: Connection, keys: Sequence[str], *, run_id: str | None = None,
                  now: dt.datetime | None = None) -> int:
    """The open letters of these keys were replayed: their keys are queued again, by ``run_id``."""
    now = now or utcnow()
    changed = 0
    for chunk in chunks(sorted(set(keys)), IN_LIST_SIZE):
        changed += conn.execute(
            update(dead_letters).where(dead_letters.c.key.in_(chunk), dead_letters.c.status == OPEN)
            .values(status=REPLAYED, replayed_at=now, replayed_run_id=run_id)
        ).rowcount
    return changed


def note_resent(conn: Connection, keys: Sequence[str], *, now: dt.datetime | None = None) -> int:
    """Klaviyo accepted these replayed keys (a 2xx, not yet proof): their replayed letters say when."""
    now = now or utcnow()
    changed = 0
    for chunk in chunks(keys, IN_LIST_SIZE):
        changed += conn.execute(
            update(dead_letters).where(dead_letters.c.key.in_(chunk), dead_letters.c.status == REPLAYED)
            .values(resent_at=now)
        ).rowcount
    return changed


def unsettled_letters(conn: Connection, keys: Iterable[str]) -> list[tuple[int, str, dt.datetime]]:
    """``(id, key, created_at)`` of the unsettled letters of the units of ``keys`` (the letters a
    delivery of them may settle). One indexed query per thousand units, finding nothing when
    nothing failed."""
    units = sorted({unit_of(key) for key in keys})
    found: list[tuple[int, str, dt.datetime]] = []
    for chunk in chunks(units, IN_LIST_SIZE):
        # The status is checked here, not in the query: with it there SQLite may walk the status
        # index over every open letter for each chunk (1.6 s for 100k keys beside 10k letters).
        found += [(letter_id, key, created) for letter_id, key, created, status in conn.execute(
            select(dead_letters.c.id, dead_letters.c.key, dead_letters.c.created_at, dead_letters.c.status)
            .where(dead_letters.c.unit.in_(chunk))
        ) if status in UNSETTLED]
    return found


def resolve_letters(conn: Connection, ids: Sequence[int], *, run_id: str | None = None,
                    now: dt.datetime | None = None) -> int:
    """These letters' keys are delivered (only :mod:`kl_sync.state.delivery` decides that)."""
    now = now or utcnow()
    changed = 0
    for chunk in chunks(sorted(set(ids)), IN_LIST_SIZE):
        changed += conn.execute(
            update(dead_letters).where(dead_letters.c.id.in_(chunk), dead_letters.c.status.in_(UNSETTLED))
            .values(status=RESOLVED, resolved_at=now, resolved_run_id=run_id)
        ).rowcount
    return changed


def discard_letters(conn: Connection, selection: Selection, *, note: str | None = None,
                    now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """A person gives up on the unsettled letters of ``selection`` (a note says why). Returns them."""
    now = now or utcnow()
    chosen = select_letters(conn, Selection(selection.keys, selection.reason, selection.step, selection.kind,
                                            selection.since, statuses=UNSETTLED))
    for chunk in chunks([letter["id"] for letter in chosen], IN_LIST_SIZE):
        conn.execute(
            update(dead_letters).where(dead_letters.c.id.in_(chunk), dead_letters.c.status.in_(UNSETTLED))
            .values(status=DISCARDED, discarded_at=now, note=note)
        )
    return chosen


def letter_counts(conn: Connection) -> dict[str, int]:
    """Letters per status (every status present, zero when none)."""
    rows = conn.execute(select(dead_letters.c.status, func.count()).group_by(dead_letters.c.status))
    return {**dict.fromkeys(STATUSES, 0), **{status: n for status, n in rows}}


def resolved_by_runs(conn: Connection, run_ids: Sequence[str]) -> dict[str, int]:
    """How many letters each of these runs resolved (runs that resolved none are absent)."""
    found: dict[str, int] = {}
    for chunk in chunks(sorted(set(run_ids)), IN_LIST_SIZE):
        found.update(conn.execute(
            select(dead_letters.c.resolved_run_id, func.count()).where(dead_letters.c.resolved_run_id.in_(chunk))
            .group_by(dead_letters.c.resolved_run_id)
        ).all())
    return found


#: What makes two reasons the same kind of trouble once the rows they name are set aside: quoted
#: values and numbers (``log 6: customer 3 has a malformed e-mail 'x@'``).
_PARTICULARS = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?")


def reason_pattern(reason: str) -> str:
    """``log 6: customer 3 has a malformed e-mail 'x@'`` -> ``log N: customer N has a malformed
    e-mail '…'``: what ``dead-letters list`` groups letters by."""
    return _PARTICULARS.sub(lambda m: "'…'" if m.group()[0] in "'\"" else "N", reason)


def letters_by_reason(conn: Connection, selection: Selection = Selection()) -> list[dict[str, Any]]:
    """The letters of ``selection`` grouped by the pattern of their reason (:func:`reason_pattern`),
    most first: how many, first and last seen, and an example key (the latest). What
    ``dead-letters list``, ``status`` and the run's artifact show."""
    rows = conn.execute(
        select(dead_letters.c.reason, func.count(), func.min(dead_letters.c.created_at),
               func.max(dead_letters.c.created_at), func.max(dead_letters.c.id))
        .where(selection.condition()).group_by(dead_letters.c.reason)
    ).all()
    groups: dict[str, dict[str, Any]] = {}
    for reason, count, first, last, last_id in rows:
        pattern = reason_pattern(reason)
        group = groups.setdefault(pattern, {"reason": pattern, "letters": 0, "first_seen": first, "last_seen": last,
                                            "last_id": last_id})
        group["letters"] += count
        group["first_seen"] = min(group["first_seen"], first)
        group["last_seen"] = max(group["last_seen"], last)
        group["last_id"] = max(group["last_id"], last_id)
    examples: dict[int, str] = {}
    for chunk in chunks([group["last_id"] for group in groups.values()], IN_LIST_SIZE):
        examples.update(conn.execute(select(dead_letters.c.id, dead_letters.c.key).where(dead_letters.c.id.in_(chunk))).all())
    summary = [{"reason": g["reason"], "letters": g["letters"], "first_seen": g["first_seen"],
                "last_seen": g["last_seen"], "example": examples[g["last_id"]]} for g in groups.values()]
    summary.sort(key=lambda entry: (-entry["letters"], entry["reason"]))
    return summary


def letters_report(conn: Connection, *, run_ids: Sequence[str] = (), reasons: int | None = None) -> dict[str, Any]:
    """Letters per status, the open ones by reason (the first ``reasons`` groups), and how many
    letters each of ``run_ids`` resolved: ``kl-sync status`` and the run's artifact."""
    by_reason = letters_by_reason(conn)
    return {**letter_counts(conn), "open_by_reason": by_reason[:reasons], "reasons": len(by_reason),
            "resolved_by_run": resolved_by_runs(conn, run_ids)}

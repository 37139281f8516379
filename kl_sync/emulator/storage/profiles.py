"""A transaction's profiles: how a request's profile writes find their profile (by id, then e-mail,
phone, external id, ...), merge into it, and are written back once at commit.

:class:`ProfileWrite` is a profile as a request sends it (the rules make them); :class:`Profiles`
holds, for one transaction, every profile and identifier owner it has looked at, so a bulk request
naming 1,000 profiles costs a few queries, and each profile is written once however many events
touched it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Sequence

from kl_sync.emulator.errors import Problem, invalid, pointer
from kl_sync.emulator.storage.schema import ATTRIBUTE_IDENTIFIERS, IDENTIFIER_KINDS
from kl_sync.chunks import chunks
from kl_sync.emulator.storage.values import IN_LIST_SIZE, dumps, identifier_key, new_ulid, placeholders

_PROFILE_COLUMNS = "id, attributes, properties, created, updated, last_event_date"


@dataclass
class ProfileWrite:
    """A profile as a request sends it; ``path`` locates it in the request for error reports."""

    path: tuple[str | int, ...]
    id: str | None
    identifiers: dict[str, str]
    #: Standard attributes present in the request; None means "clear it" (Klaviyo's rule).
    attributes: dict[str, Any]
    #: Custom properties to merge (later writes win per key), or None when not sent.
    properties: dict[str, Any] | None
    patch_append: dict[str, Any] = field(default_factory=dict)
    patch_unappend: dict[str, Any] = field(default_factory=dict)
    patch_unset: tuple[str, ...] = ()

    @property
    def pointer(self) -> str:
        return pointer(self.path)


@dataclass
class _ProfileState:
    id: str
    attributes: dict[str, Any]
    properties: dict[str, Any]
    created: str
    updated: str
    last_event_date: str | None
    is_new: bool
    dirty: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> _ProfileState:
        return cls(row[0], json.loads(row[1]), json.loads(row[2]), row[3], row[4], row[5], False)


class _Refused(Exception):
    """One profile write the account cannot apply; collected into one answer per request."""

    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


class Profiles:
    """The profiles one write transaction has touched, cached until :meth:`flush`."""

    def __init__(self, conn: sqlite3.Connection, now_iso: str):
        self._conn = conn
        self.now_iso = now_iso
        self._profiles: dict[str, _ProfileState] = {}
        self._owners: dict[tuple[str, str], str | None] = {}
        self._owner_changes: dict[tuple[str, str], str | None] = {}

    def load(self, profile_id: str) -> _ProfileState | None:
        state = self._profiles.get(profile_id)
        if state is not None:
            return state
        row = self._conn.execute(f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        if row is None:
            return None
        state = self._profiles[profile_id] = _ProfileState.from_row(row)
        return state

    def _prefetch(self, writes: Sequence[ProfileWrite]) -> None:
        """Look up every id and identifier a request names in a few queries instead of one or two per
        profile (a bulk request names up to 1,000 of them)."""
        wanted: dict[str, set[str]] = {}
        ids: set[str] = set()
        for write in writes:
            if write.id is not None:
                ids.add(write.id)
            for kind, value in write.identifiers.items():
                key = identifier_key(kind, value)
                if (kind, key) not in self._owners:
                    wanted.setdefault(kind, set()).add(key)
        for kind, keys in wanted.items():
            for chunk in chunks(sorted(keys), IN_LIST_SIZE):
                found = dict(
                    self._conn.execute(
                        "SELECT value, profile_id FROM profile_identifiers WHERE kind = ? "
                        f"AND value IN ({placeholders(len(chunk))})",
                        (kind, *chunk),
                    ).fetchall()
                )
                for key in chunk:
                    self._owners[(kind, key)] = found.get(key)
                ids.update(found.values())
        for chunk in chunks(sorted(ids - self._profiles.keys()), IN_LIST_SIZE):
            rows = self._conn.execute(
                f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE id IN ({placeholders(len(chunk))})", chunk
            ).fetchall()
            for row in rows:
                self._profiles[row[0]] = _ProfileState.from_row(row)

    def _owner(self, kind: str, key: str) -> str | None:
        slot = (kind, key)
        if slot not in self._owners:
            row = self._conn.execute(
                "SELECT profile_id FROM profile_identifiers WHERE kind = ? AND value = ?", slot
            ).fetchone()
            self._owners[slot] = row[0] if row else None
        return self._owners[slot]

    def _set_owner(self, kind: str, key: str, profile_id: str | None) -> None:
        """Record who holds an identifier; written to the table at :meth:`flush`, in one batch."""
        self._owners[(kind, key)] = profile_id
        self._owner_changes[(kind, key)] = profile_id

    def upsert(self, writes: Sequence[ProfileWrite], source: str = "server") -> list[tuple[str, bool]]:
        """Apply each write in order (see :meth:`~kl_sync.emulator.storage.writes.Tx.upsert_profiles`)."""
        self._prefetch(writes)
        applied: list[tuple[str, bool]] = []
        refused: list[Problem] = []
        for write in writes:
            try:
                applied.append(self._upsert(write, source))
            except _Refused as exc:
                refused.append(exc.problem)
        if refused:
            raise invalid(refused)
        return applied

    def upsert_each(self, writes: Sequence[ProfileWrite]) -> list[tuple[str, bool] | Problem]:
        """Apply each write on its own: a write the account cannot apply (an identifier another
        profile holds) is its Problem in the result, and the others are applied (a bulk import job
        lists such profiles as import errors instead of failing the whole request)."""
        self._prefetch(writes)
        results: list[tuple[str, bool] | Problem] = []
        for write in writes:
            try:
                results.append(self._upsert(write, "server"))
            except _Refused as exc:
                results.append(exc.problem)
        return results

    def _upsert(self, write: ProfileWrite, source: str) -> tuple[str, bool]:
        state = self._find(write)
        if state is None:
            state = _ProfileState(new_ulid(), {}, {}, self.now_iso, self.now_iso, None, True)
            self._profiles[state.id] = state
        # A client-side (public key) request may not change an existing profile's identifiers.
        locked = source == "client" and not state.is_new
        self._check_identifiers(state, write, locked)
        self._apply(state, write, locked)
        return state.id, state.is_new

    def _find(self, write: ProfileWrite) -> _ProfileState | None:
        if write.id is not None:
            state = self.load(write.id)
            if state is None:
                raise _Refused(
                    Problem(404, "not_found", f"No profile with id {write.id!r}.", pointer=write.pointer + "/id")
                )
            return state
        for kind in IDENTIFIER_KINDS:
            if kind in write.identifiers:
                owner = self._owner(kind, identifier_key(kind, write.identifiers[kind]))
                if owner is not None:
                    return self.load(owner)
        return None

    def _check_identifiers(self, state: _ProfileState, write: ProfileWrite, locked: bool) -> None:
        for kind, value in write.identifiers.items():
            if locked and kind in ATTRIBUTE_IDENTIFIERS and state.attributes.get(kind):
                continue
            owner = self._owner(kind, identifier_key(kind, value))
            if owner is not None and owner != state.id:
                raise _Refused(
                    Problem(
                        409,
                        "duplicate_profile",
                        f"A profile already exists with {kind} {value!r}.",
                        pointer=f"{write.pointer}/attributes/{kind}",
                        meta={"duplicate_profile_id": owner},
                    )
                )

    def _apply(self, state: _ProfileState, write: ProfileWrite, locked: bool) -> None:
        attributes = dict(write.attributes)
        if state.is_new:
            # A profile created from identifiers alone (a suppression, say) still shows them.
            for kind in ATTRIBUTE_IDENTIFIERS:
                if kind in write.identifiers and kind not in attributes:
                    attributes[kind] = write.identifiers[kind]
        for name, value in attributes.items():
            if locked and name in ATTRIBUTE_IDENTIFIERS and state.attributes.get(name):
                continue
            old = state.attributes.get(name)
            if isinstance(value, str) and name in ATTRIBUTE_IDENTIFIERS:
                value = value.strip() or None
            if value is None:
                state.attributes.pop(name, None)
            else:
                state.attributes[name] = value
            if name in ATTRIBUTE_IDENTIFIERS and old != value:
                if isinstance(old, str):
                    self._set_owner(name, identifier_key(name, old), None)
                if isinstance(value, str):
                    self._set_owner(name, identifier_key(name, value), state.id)
        for kind in ("anonymous_id", "_kx"):
            if kind in write.identifiers:
                self._set_owner(kind, identifier_key(kind, write.identifiers[kind]), state.id)
        if write.properties:
            state.properties.update(write.properties)
        _patch(state.properties, write)
        state.updated = self.now_iso
        state.dirty = True

    def saw_event(self, profile_id: str, moment: str) -> None:
        """Move a profile's ``last_event_date`` forward to ``moment`` (ISO, UTC)."""
        state = self.load(profile_id)
        if state is not None and (state.last_event_date is None or moment > state.last_event_date):
            state.last_event_date = moment
            state.dirty = True

    def flush(self) -> None:
        """Write changed profiles and identifiers back."""
        if self._owner_changes:
            changes = self._owner_changes.items()
            self._conn.executemany(
                "DELETE FROM profile_identifiers WHERE kind = ? AND value = ?",
                [slot for slot, owner in changes if owner is None],
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO profile_identifiers (kind, value, profile_id) VALUES (?, ?, ?)",
                [(*slot, owner) for slot, owner in changes if owner is not None],
            )
            self._owner_changes = {}
        new, changed = [], []
        for state in self._profiles.values():
            if not state.dirty:
                continue
            values = (dumps(state.attributes), dumps(state.properties), state.updated, state.last_event_date)
            if state.is_new:
                new.append((state.id, *values, state.created))
                state.is_new = False
            else:
                changed.append((*values, state.id))
            state.dirty = False
        if new:
            self._conn.executemany(
                "INSERT INTO profiles (id, attributes, properties, updated, last_event_date, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                new,
            )
        if changed:
            self._conn.executemany(
                "UPDATE profiles SET attributes = ?, properties = ?, updated = ?, last_event_date = ? WHERE id = ?",
                changed,
            )


def _patch(properties: dict[str, Any], write: ProfileWrite) -> None:
    """``meta.patch_properties``: append / unappend values to list properties, unset keys."""
    for key, value in write.patch_append.items():
        current = properties.get(key)
        items = list(current) if isinstance(current, list) else ([] if current is None else [current])
        items.extend(value if isinstance(value, list) else [value])
        properties[key] = items
    for key, value in write.patch_unappend.items():
        current = properties.get(key)
        if isinstance(current, list):
            drop = value if isinstance(value, list) else [value]
            properties[key] = [item for item in current if item not in drop]
    for key in write.patch_unset:
        properties.pop(key, None)

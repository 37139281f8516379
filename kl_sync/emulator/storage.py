"""The emulated Klaviyo account: one SQLite file (``data_dir/emulator.db``, WAL) behind one lock.

Writes go through :meth:`Store.transaction`: a request's whole effect commits at once or not at all,
so a request rejected halfway (a conflict found while storing its 400th profile) leaves nothing
behind. Restarting the emulator over the same directory keeps the account: profiles, metrics,
events (and so ``unique_id`` dedupe), lists, suppressions and jobs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from kl_sync.emulator.errors import Problem, pointer

#: Profile identifiers, in the order a profile is looked up by them.
IDENTIFIER_KINDS = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
#: Identifiers that are also attributes of the profile resource.
ATTRIBUTE_IDENTIFIERS = ("email", "phone_number", "external_id")
#: Standard (non-custom) profile attributes kept and returned.
PROFILE_ATTRIBUTES = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    attributes TEXT NOT NULL,
    properties TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    last_event_date TEXT
);
CREATE TABLE IF NOT EXISTS profile_identifiers (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX IF NOT EXISTS profile_identifiers_profile ON profile_identifiers (profile_id);
CREATE TABLE IF NOT EXISTS metrics (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,  -- 80 random bits; not indexed: nothing looks an event up by id
    uuid TEXT NOT NULL,
    metric_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    -- unique_id, or the time to the second when there is none (Klaviyo's default)
    dedupe_key TEXT NOT NULL,
    unique_id TEXT,
    time INTEGER NOT NULL,
    value REAL,
    value_currency TEXT,
    backfill INTEGER NOT NULL,
    properties TEXT NOT NULL,
    source TEXT NOT NULL,
    received TEXT NOT NULL,
    UNIQUE (profile_id, metric_id, dedupe_key)
);
CREATE INDEX IF NOT EXISTS events_time ON events (time, seq);
CREATE TABLE IF NOT EXISTS suppressions (
    email_key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lists (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    opt_in_process TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS list_members (
    list_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    added TEXT NOT NULL,
    PRIMARY KEY (list_id, profile_id)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    total_count INTEGER NOT NULL,
    completed_count INTEGER NOT NULL,
    failed_count INTEGER NOT NULL,
    skipped_count INTEGER NOT NULL,
    list_ids TEXT NOT NULL,
    profile_ids TEXT NOT NULL
);
"""


# --- what a request writes -------------------------------------------------------------------------


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
class EventWrite:
    path: tuple[str | int, ...]
    profile: ProfileWrite
    metric: str
    time: int  # epoch seconds
    unique_id: str | None
    value: float | None
    value_currency: str | None
    backfill: bool
    properties: dict[str, Any]
    source: str  # "server" | "client"


class StoreProblem(Exception):
    """A write that cannot be applied (unknown id, identifier held by another profile)."""

    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


# --- ids and times ---------------------------------------------------------------------------------

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SHORT_ALPHABET = string.ascii_letters + string.digits


_CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Byte -> one Crockford character (its low 5 bits), so random bytes become id text in C.
_RANDOM_CHARS = bytes(ord(_CROCKFORD_ALPHABET[b & 31]) for b in range(256))


def new_ulid() -> str:
    """26 Crockford base-32 characters: 10 for the time in ms, 16 random (a ULID, as Klaviyo's
    profile and job ids are)."""
    ms = int(time.time() * 1000)
    stamp = "".join(_CROCKFORD_ALPHABET[(ms >> shift) & 31] for shift in range(45, -5, -5))
    return stamp + os.urandom(16).translate(_RANDOM_CHARS).decode("ascii")


def new_short_id() -> str:
    """Six letters and digits (Klaviyo's metric and list ids look like this)."""
    return "".join(secrets.choice(_SHORT_ALPHABET) for _ in range(6))


def _uuid4(hex32: str) -> str:
    """A version-4 UUID string from 32 random hex digits (uuid.uuid4() is slow in bulk)."""
    variant = "89ab"[int(hex32[16], 16) & 3]
    return f"{hex32[:8]}-{hex32[8:12]}-4{hex32[13:16]}-{variant}{hex32[17:20]}-{hex32[20:32]}"


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


def iso_from_epoch(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def identifier_key(kind: str, value: str) -> str:
    """E-mail matches case-insensitively; other identifiers as sent."""
    return value.strip().lower() if kind == "email" else value.strip()


# --- cursors ---------------------------------------------------------------------------------------


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise ValueError("not a cursor this server issued") from None
    if not isinstance(key, list) or len(key) != 2 or not isinstance(key[1], int):
        raise ValueError("not a cursor this server issued")
    return key


@dataclass(frozen=True)
class Condition:
    """One filter term, values already normalized (epoch seconds for event times, ISO strings for
    profile/list times, lists for ``any``)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


_COMPARE = {
    "equals": "=",
    "greater-than": ">",
    "greater-or-equal": ">=",
    "less-than": "<",
    "less-or-equal": "<=",
}


# --- in-transaction profile state ------------------------------------------------------------------


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


class Tx:
    """One write transaction; profiles are cached and written back once at commit."""

    def __init__(self, conn: sqlite3.Connection, metric_cache: dict[str, str]):
        self._conn = conn
        self._metrics = metric_cache
        self._new_metrics: dict[str, str] = {}
        self._profiles: dict[str, _ProfileState] = {}
        self._owners: dict[tuple[str, str], str | None] = {}
        self._owner_changes: dict[tuple[str, str], str | None] = {}
        self.now = utc_now()
        self.now_iso = iso(self.now)

    # profiles ------------------------------------------------------------------------------------

    def _load(self, profile_id: str) -> _ProfileState | None:
        state = self._profiles.get(profile_id)
        if state is not None:
            return state
        row = self._conn.execute(
            "SELECT id, attributes, properties, created, updated, last_event_date FROM profiles WHERE id = ?",
            (profile_id,),
        ).fetchone()
        if row is None:
            return None
        state = _ProfileState(row[0], json.loads(row[1]), json.loads(row[2]), row[3], row[4], row[5], False)
        self._profiles[profile_id] = state
        return state

    def prefetch(self, writes: Sequence[ProfileWrite]) -> None:
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
            for chunk in _chunks(sorted(keys)):
                found = dict(
                    self._conn.execute(
                        "SELECT value, profile_id FROM profile_identifiers WHERE kind = ? "
                        f"AND value IN ({','.join('?' * len(chunk))})",
                        (kind, *chunk),
                    ).fetchall()
                )
                for key in chunk:
                    self._owners[(kind, key)] = found.get(key)
                ids.update(found.values())
        for chunk in _chunks(sorted(ids - self._profiles.keys())):
            rows = self._conn.execute(
                "SELECT id, attributes, properties, created, updated, last_event_date FROM profiles "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for row in rows:
                self._profiles[row[0]] = _ProfileState(
                    row[0], json.loads(row[1]), json.loads(row[2]), row[3], row[4], row[5], False
                )

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

    def upsert_profile(self, write: ProfileWrite, source: str = "server") -> tuple[str, bool]:
        """Find the profile (id, then e-mail, phone, external id, ...), create it if none, apply the
        write. Returns (profile id, created). Raises :class:`StoreProblem`."""
        state: _ProfileState | None = None
        if write.id is not None:
            state = self._load(write.id)
            if state is None:
                raise StoreProblem(
                    Problem(404, "not_found", f"No profile with id {write.id!r}.", pointer=write.pointer + "/id")
                )
        else:
            for kind in IDENTIFIER_KINDS:
                if kind in write.identifiers:
                    owner = self._owner(kind, identifier_key(kind, write.identifiers[kind]))
                    if owner is not None:
                        state = self._load(owner)
                        break
        if state is None:
            state = _ProfileState(new_ulid(), {}, {}, self.now_iso, self.now_iso, None, True)
            self._profiles[state.id] = state
        # A client-side (public key) request may not change an existing profile's identifiers.
        locked = source == "client" and not state.is_new
        for kind, value in write.identifiers.items():
            if locked and kind in ATTRIBUTE_IDENTIFIERS and state.attributes.get(kind):
                continue
            owner = self._owner(kind, identifier_key(kind, value))
            if owner is not None and owner != state.id:
                raise StoreProblem(
                    Problem(
                        409,
                        "duplicate_profile",
                        f"A profile already exists with {kind} {value!r}.",
                        pointer=f"{write.pointer}/attributes/{kind}",
                        meta={"duplicate_profile_id": owner},
                    )
                )
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
        return state.id, state.is_new

    def profile_exists(self, profile_id: str) -> bool:
        return self._load(profile_id) is not None

    # metrics and events --------------------------------------------------------------------------

    def metric_id(self, name: str) -> str:
        """Metrics are created on first use, by name."""
        found = self._metrics.get(name) or self._new_metrics.get(name)
        if found is None:
            row = self._conn.execute("SELECT id FROM metrics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                found = row[0]
                self._metrics[name] = found
            else:
                found = new_short_id()
                self._conn.execute(
                    "INSERT INTO metrics (id, name, created, updated) VALUES (?, ?, ?, ?)",
                    (found, name, self.now_iso, self.now_iso),
                )
                self._new_metrics[name] = found
        return found

    def add_events(self, events: Sequence[tuple[EventWrite, str]]) -> int:
        """Insert (event, profile id) pairs; the first per (profile, metric, unique_id) wins and later
        ones are dropped silently, as Klaviyo does. Returns how many were stored."""
        rows = []
        latest: dict[str, int] = {}
        for event, profile_id in events:
            metric_id = self.metric_id(event.metric)
            token = os.urandom(26).hex()
            rows.append(
                (
                    token[:20],
                    _uuid4(token[20:]),
                    metric_id,
                    profile_id,
                    event.unique_id if event.unique_id is not None else str(event.time),
                    event.unique_id,
                    event.time,
                    event.value,
                    event.value_currency,
                    int(event.backfill),
                    _dumps(event.properties),
                    event.source,
                    self.now_iso,
                )
            )
            latest[profile_id] = max(latest.get(profile_id, 0), event.time)
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT OR IGNORE INTO events (id, uuid, metric_id, profile_id, dedupe_key, unique_id, time, value, "
            "value_currency, backfill, properties, source, received) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        stored = self._conn.total_changes - before
        for profile_id, epoch in latest.items():
            state = self._load(profile_id)
            if state is not None:
                moment = iso_from_epoch(epoch)
                if state.last_event_date is None or moment > state.last_event_date:
                    state.last_event_date = moment
                    state.dirty = True
        return stored

    # lists, suppressions, jobs -------------------------------------------------------------------

    def create_list(self, name: str, opt_in_process: str | None) -> str:
        list_id = new_short_id()
        self._conn.execute(
            "INSERT INTO lists (id, name, opt_in_process, created, updated) VALUES (?, ?, ?, ?, ?)",
            (list_id, name, opt_in_process or "single_opt_in", self.now_iso, self.now_iso),
        )
        return list_id

    def list_exists(self, list_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM lists WHERE id = ?", (list_id,)).fetchone() is not None

    def add_list_members(self, list_id: str, profile_ids: Sequence[str]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO list_members (list_id, profile_id, added) VALUES (?, ?, ?)",
            [(list_id, pid, self.now_iso) for pid in profile_ids],
        )
        self._conn.execute("UPDATE lists SET updated = ? WHERE id = ?", (self.now_iso, list_id))

    def list_member_emails(self, list_id: str) -> list[tuple[str, str]]:
        """(email, profile id) of a list's members that have an e-mail."""
        self.flush()
        rows = self._conn.execute(
            "SELECT json_extract(p.attributes, '$.email'), p.id FROM list_members m "
            "JOIN profiles p ON p.id = m.profile_id WHERE m.list_id = ? ORDER BY m.rowid",
            (list_id,),
        ).fetchall()
        return [(r[0], r[1]) for r in rows if r[0]]

    def suppress(self, email: str, profile_id: str) -> bool:
        """Suppress an e-mail; False when it already was (the first suppression's time is kept)."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO suppressions (email_key, email, profile_id, reason, time) VALUES (?, ?, ?, ?, ?)",
            (identifier_key("email", email), email, profile_id, "USER_SUPPRESSED", self.now_iso),
        )
        return cursor.rowcount == 1

    def create_job(
        self,
        kind: str,
        *,
        total: int,
        completed: int,
        failed: int = 0,
        skipped: int = 0,
        list_ids: Sequence[str] = (),
        profile_ids: Sequence[str] = (),
    ) -> str:
        """A bulk job, already complete: the emulator applies a job while answering its POST."""
        job_id = new_ulid()
        self._conn.execute(
            "INSERT INTO jobs (id, type, status, created_at, completed_at, total_count, completed_count, "
            "failed_count, skipped_count, list_ids, profile_ids) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                job_id,
                kind,
                "complete",
                self.now_iso,
                self.now_iso,
                total,
                completed,
                failed,
                skipped,
                json.dumps(list(list_ids)),
                json.dumps(list(profile_ids)),
            ),
        )
        return job_id

    def flush(self) -> None:
        """Write changed profiles and identifiers back (once per transaction, however many events
        touched them)."""
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
            values = (
                _dumps(state.attributes),
                _dumps(state.properties),
                state.updated,
                state.last_event_date,
            )
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

    def committed(self) -> None:
        self._metrics.update(self._new_metrics)


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


# --- the store -------------------------------------------------------------------------------------


class Store:
    """The account's data. Thread-safe: one connection, one lock, short transactions."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._metric_cache: dict[str, str] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self._conn, self._metric_cache)
            try:
                yield tx
                tx.flush()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            tx.committed()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # reads for the API ---------------------------------------------------------------------------

    def _page(
        self,
        select: str,
        where: list[str],
        params: list[Any],
        sort_expr: str,
        descending: bool,
        seq_expr: str,
        after: list[Any] | None,
        size: int,
    ) -> Page:
        """Keyset paging on (sort value, seq): stable while rows are added. ``after`` is the key
        of the previous page's last row (a decoded cursor)."""
        where = list(where)
        params = list(params)
        if after is not None:
            value, seq = after
            op = "<" if descending else ">"
            where.append(f"({sort_expr} {op} ? OR ({sort_expr} = ? AND {seq_expr} {op} ?))")
            params += [value, value, seq]
        direction = "DESC" if descending else "ASC"
        sql = select + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {sort_expr} {direction}, {seq_expr} {direction} LIMIT ?"
        rows = self._query(sql, [*params, size + 1])
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = encode_cursor([rows[-1]["_sort"], rows[-1]["_seq"]]) if more else None
        return Page(rows, next_cursor)

    def page_events(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        where, params = [], []
        for c in conditions:
            if c.field in ("metric_id", "profile_id"):
                where.append(f"e.{c.field} = ?")
            else:  # datetime / timestamp, as epoch seconds
                where.append(f"e.time {_COMPARE[c.op]} ?")
            params.append(c.value)
        return self._page(
            "SELECT e.seq AS _seq, e.time AS _sort, e.id, e.uuid, e.metric_id, e.profile_id, e.unique_id, "
            "e.dedupe_key, e.time, e.value, e.value_currency, e.properties FROM events e",
            where,
            params,
            "e.time",
            bool(sort and sort.startswith("-")),
            "e.seq",
            after,
            size,
        )

    def page_profiles(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        where, params = [], []
        for c in conditions:
            values = c.value if c.op == "any" else [c.value]
            if c.field == "id":
                where.append(f"p.id IN ({','.join('?' * len(values))})")
                params += values
            elif c.field in IDENTIFIER_KINDS:
                where.append(
                    "p.id IN (SELECT profile_id FROM profile_identifiers WHERE kind = ? "
                    f"AND value IN ({','.join('?' * len(values))}))"
                )
                params += [c.field, *(identifier_key(c.field, str(v)) for v in values)]
            else:  # created / updated
                where.append(f"p.{c.field} {_COMPARE[c.op]} ?")
                params.append(c.value)
        field_name = (sort or "").lstrip("-")
        sort_expr = {
            "id": "p.id",
            "created": "p.created",
            "updated": "p.updated",
            "email": "COALESCE(json_extract(p.attributes, '$.email'), '')",
        }.get(field_name, "p.seq")
        return self._page(
            f"SELECT p.seq AS _seq, {sort_expr} AS _sort, p.id, p.attributes, p.properties, p.created, p.updated, "
            "p.last_event_date FROM profiles p",
            where,
            params,
            sort_expr,
            bool(sort and sort.startswith("-")),
            "p.seq",
            after,
            size,
        )

    def page_lists(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        where, params = [], []
        for c in conditions:
            values = c.value if c.op == "any" else [c.value]
            if c.field in ("id", "name"):
                where.append(f"l.{c.field} IN ({','.join('?' * len(values))})")
                params += values
            else:
                where.append(f"l.{c.field} {_COMPARE[c.op]} ?")
                params.append(c.value)
        field_name = (sort or "").lstrip("-")
        sort_expr = f"l.{field_name}" if field_name in ("id", "name", "created", "updated") else "l.seq"
        return self._page(
            f"SELECT l.seq AS _seq, {sort_expr} AS _sort, l.id, l.name, l.opt_in_process, l.created, l.updated "
            "FROM lists l",
            where,
            params,
            sort_expr,
            bool(sort and sort.startswith("-")),
            "l.seq",
            after,
            size,
        )

    def page_metrics(self, after: list[Any] | None, size: int) -> Page:
        return self._page(
            "SELECT m.seq AS _seq, m.seq AS _sort, m.id, m.name, m.created, m.updated FROM metrics m",
            [],
            [],
            "m.seq",
            False,
            "m.seq",
            after,
            size,
        )

    def metrics_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = self._query(
            f"SELECT id, name, created, updated FROM metrics WHERE id IN ({','.join('?' * len(ids))})", list(ids)
        )
        return {r["id"]: r for r in rows}

    def profiles_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = self._query(
            "SELECT id, attributes, properties, created, updated, last_event_date FROM profiles "
            f"WHERE id IN ({','.join('?' * len(ids))})",
            list(ids),
        )
        return {r["id"]: r for r in rows}

    def suppressions_by_email(self, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
        keys = [identifier_key("email", e) for e in emails if e]
        if not keys:
            return {}
        rows = self._query(
            f"SELECT email_key, reason, time FROM suppressions WHERE email_key IN ({','.join('?' * len(keys))})", keys
        )
        return {r["email_key"]: r for r in rows}

    def lists_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = self._query(
            f"SELECT id, name, opt_in_process, created, updated FROM lists WHERE id IN ({','.join('?' * len(ids))})",
            list(ids),
        )
        return {r["id"]: r for r in rows}

    def job(self, kind: str, job_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM jobs WHERE type = ? AND id = ?", (kind, job_id))
        return rows[0] if rows else None

    # whole-account snapshots (for tests, the demo and benchmarks) --------------------------------

    def events(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT e.id, m.name AS metric, json_extract(p.attributes, '$.email') AS profile_email, e.profile_id, "
            "e.unique_id, e.time, e.value, e.value_currency, e.backfill, e.properties, e.source "
            "FROM events e JOIN metrics m ON m.id = e.metric_id JOIN profiles p ON p.id = e.profile_id ORDER BY e.seq"
        )
        for row in rows:
            row["time"] = iso_from_epoch(row["time"])
            row["backfill"] = bool(row["backfill"])
            row["properties"] = json.loads(row["properties"])
        return rows

    def profiles(self) -> list[dict[str, Any]]:
        out = []
        for row in self._query("SELECT id, attributes, properties, created, updated FROM profiles ORDER BY seq"):
            attributes = json.loads(row["attributes"])
            out.append(
                {
                    "id": row["id"],
                    "email": attributes.get("email"),
                    "phone_number": attributes.get("phone_number"),
                    "external_id": attributes.get("external_id"),
                    "first_name": attributes.get("first_name"),
                    "last_name": attributes.get("last_name"),
                    "properties": json.loads(row["properties"]),
                    "created": row["created"],
                    "updated": row["updated"],
                }
            )
        return out

    def suppressions(self) -> list[dict[str, Any]]:
        return self._query("SELECT email, time, reason, profile_id FROM suppressions ORDER BY rowid")

    def lists(self) -> list[dict[str, Any]]:
        lists = self._query("SELECT id, name, created FROM lists ORDER BY seq")
        members = self._query(
            "SELECT m.list_id, json_extract(p.attributes, '$.email') AS email FROM list_members m "
            "JOIN profiles p ON p.id = m.profile_id ORDER BY m.rowid"
        )
        for item in lists:
            item["profile_emails"] = [m["email"] for m in members if m["list_id"] == item["id"]]
        return lists

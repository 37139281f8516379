"""What a request writes, and the transaction that writes it (:class:`Tx`).

The rules (:mod:`kl_sync.emulator.rules`) turn a body into
:class:`~kl_sync.emulator.storage.profiles.ProfileWrite` and :class:`EventWrite` records; a route
applies them in one ``with store.transaction() as tx:``, so a request's whole effect commits at once or
not at all. A write the account cannot apply (an unknown profile id, an identifier another profile
holds) raises Klaviyo's error answer (:func:`~kl_sync.emulator.errors.invalid`), which rolls the
transaction back. A new kind of write (an unsuppression) is one method here.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Sequence

from kl_sync.emulator.errors import TITLES
from kl_sync.emulator.storage.profiles import Profiles, ProfileWrite
from kl_sync.emulator.storage.values import (
    dumps,
    identifier_key,
    iso,
    iso_from_epoch,
    new_short_id,
    new_ulid,
    utc_now,
    uuid4_from_hex,
)


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


def dedupe_key(event: EventWrite) -> str:
    """What Klaviyo keeps one event per (with the profile and metric): its unique_id, else its time
    to the second ("If this field is not present, this field will use the time to the second")."""
    return event.unique_id if event.unique_id is not None else str(event.time)


class Tx:
    """One write transaction; the profiles it touches are cached (:attr:`profiles`) and written back
    once, at :meth:`flush`."""

    def __init__(self, conn: sqlite3.Connection, metric_cache: dict[str, str]):
        self._conn = conn
        self._metrics = metric_cache
        self._new_metrics: dict[str, str] = {}
        self.now = utc_now()
        self.now_iso = iso(self.now)
        self.profiles = Profiles(conn, self.now_iso)

    # profiles ------------------------------------------------------------------------------------

    def upsert_profiles(self, writes: Sequence[ProfileWrite], source: str = "server") -> list[tuple[str, bool]]:
        """Apply each write in order to its profile, found by id, then e-mail, phone, external id, ...,
        or created. Returns (profile id, created) per write. Every write the account cannot apply is
        reported at once, in one error answer."""
        return self.profiles.upsert(writes, source)

    def upsert_each_profile(self, writes: Sequence[ProfileWrite]) -> list[Any]:
        """Each write applied on its own; a refused one is its Problem (a bulk import's import error)."""
        return self.profiles.upsert_each(writes)

    def upsert_profile(self, write: ProfileWrite, source: str = "server") -> tuple[str, bool]:
        return self.upsert_profiles([write], source)[0]

    def profile_exists(self, profile_id: str) -> bool:
        return self.profiles.load(profile_id) is not None

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

    def add_events(
        self,
        events: Sequence[tuple[EventWrite, str]],
        *,
        lost: Sequence[bool] | None = None,
        processed_at: float = 0.0,
    ) -> int:
        """Insert (event, profile id) pairs, readable from ``processed_at`` (epoch seconds); the first
        per (profile, metric, unique_id) wins and later ones are dropped silently, as Klaviyo does.
        The events ``lost`` flags go to ``lost_events`` instead: never readable, their unique_id not
        taken (:mod:`kl_sync.emulator.processing`). Returns how many were kept for processing."""
        rows = []
        lost_rows = []
        latest: dict[str, int] = {}
        # Each kept event's id and uuid: 26 random bytes, read from the OS once for the request (a
        # call per event released the interpreter lock 1,000 times a request, each a wait to take it
        # back while the server's other threads ran).
        random_hex = os.urandom(26 * len(events)).hex()
        for index, (event, profile_id) in enumerate(events):
            metric_id = self.metric_id(event.metric)
            properties = dumps(event.properties)
            if lost is not None and lost[index]:
                lost_rows.append(
                    (metric_id, profile_id, event.unique_id, event.time, properties, event.source, self.now_iso)
                )
                continue
            token = random_hex[52 * index:52 * index + 52]
            rows.append(
                (
                    token[:20],
                    uuid4_from_hex(token[20:]),
                    metric_id,
                    profile_id,
                    dedupe_key(event),
                    event.unique_id,
                    event.time,
                    event.value,
                    event.value_currency,
                    int(event.backfill),
                    properties,
                    event.source,
                    self.now_iso,
                    processed_at,
                )
            )
            latest[profile_id] = max(latest.get(profile_id, 0), event.time)
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT OR IGNORE INTO events (id, uuid, metric_id, profile_id, dedupe_key, unique_id, time, value, "
            "value_currency, backfill, properties, source, received, processed_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        stored = self._conn.total_changes - before
        self._conn.executemany(
            "INSERT INTO lost_events (metric_id, profile_id, unique_id, time, properties, source, received) "
            "VALUES (?,?,?,?,?,?,?)",
            lost_rows,
        )
        for profile_id, epoch in latest.items():
            self.profiles.saw_event(profile_id, iso_from_epoch(epoch))
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

    def unsuppress(self, email: str) -> bool:
        """Lift an e-mail's suppression if its reason is USER_SUPPRESSED; False otherwise. The spec:
        "This only removes suppressions with reason USER_SUPPRESSED; unsubscribed profiles and
        suppressed profiles with reason INVALID_EMAIL or HARD_BOUNCE remain unchanged"
        (bulk_unsuppress_profiles)."""
        cursor = self._conn.execute(
            "DELETE FROM suppressions WHERE email_key = ? AND reason = 'USER_SUPPRESSED'",
            (identifier_key("email", email),),
        )
        return cursor.rowcount == 1

    def plant_suppression(self, email: str, profile_id: str, reason: str, at_iso: str | None = None) -> None:
        """What Klaviyo learns on its own (a person unsubscribing from a Klaviyo e-mail, a bounce, a
        spam complaint), for tests and the demo: the e-mail's suppression is now ``reason``. One
        suppression per e-mail is kept, the planted one; no unsuppression can lift a reason other
        than USER_SUPPRESSED, so this is never more lenient than Klaviyo."""
        self._conn.execute(
            "INSERT OR REPLACE INTO suppressions (email_key, email, profile_id, reason, time) VALUES (?, ?, ?, ?, ?)",
            (identifier_key("email", email), email, profile_id, reason, at_iso or self.now_iso),
        )

    def add_import_errors(self, job_id: str, errors: Sequence[tuple[Any, Any]]) -> None:
        """A job's import errors: (Problem, the profile resource as sent) each."""
        self._conn.executemany(
            "INSERT INTO import_errors (id, job_id, code, title, detail, pointer, original_payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(new_ulid(), job_id, p.code, TITLES.get(p.code, "Error."), p.detail, p.pointer, dumps(original))
             for p, original in errors],
        )

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

    # commit --------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write changed profiles and identifiers back (once per transaction, however many events
        touched them)."""
        self.profiles.flush()

    def committed(self) -> None:
        self._metrics.update(self._new_metrics)

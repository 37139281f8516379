"""The account's tables (one SQLite file, WAL) and what a stored profile holds.

A new kind of stored thing (an unsuppression's trail, a bulk job's import errors) is a table here,
its writes in :mod:`.writes` and its reads in :mod:`.reads`. ``CREATE ... IF NOT EXISTS``: an account
written by an older emulator opens as it is, given the columns added since (:data:`_ADDED_COLUMNS`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    -- epoch seconds from which the event is processed and can be read back (.processing)
    processed_at REAL NOT NULL DEFAULT 0,
    UNIQUE (profile_id, metric_id, dedupe_key)
);
CREATE INDEX IF NOT EXISTS events_time ON events (time, seq);
-- accepted events that processing lost: never readable, their unique_id not taken (tests look here)
CREATE TABLE IF NOT EXISTS lost_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    metric_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    unique_id TEXT,
    time INTEGER NOT NULL,
    properties TEXT NOT NULL,
    source TEXT NOT NULL,
    received TEXT NOT NULL
);
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
-- what a bulk import job could not import, one row per refused profile (get_errors_for_bulk_import_profiles_job)
CREATE TABLE IF NOT EXISTS import_errors (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    code TEXT NOT NULL,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    pointer TEXT,
    original_payload TEXT
);
CREATE INDEX IF NOT EXISTS import_errors_job ON import_errors (job_id, seq);
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


def connect(path: Path) -> sqlite3.Connection:
    """The account file, created with its tables if new. Autocommit mode: the store begins and ends
    every transaction itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    _add_missing_columns(conn)
    return conn


#: Columns added since the first account was written: (table, column, its definition).
_ADDED_COLUMNS = (("events", "processed_at", "REAL NOT NULL DEFAULT 0"),)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """An account written by an older emulator gets the columns it lacks (its events processed)."""
    for table, column, definition in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

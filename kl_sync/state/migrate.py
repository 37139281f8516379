"""Apply the state schema's Alembic migrations: on start (``open_state``) and by ``kl-sync db upgrade``."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from kl_sync.db import backend, make_engine
from kl_sync.failures import Failure

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic's runtime is imported only to migrate: a state already at head (every start but the first
# after an upgrade) is opened without it, which keeps `kl-sync status` well under a second.

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_NAME = "kl_sync_migrations"


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's revision: the one no other migration revises. Read from the files'
    ``revision`` / ``down_revision`` lines rather than through Alembic, which imports every migration
    (~1 s) to tell; ``tests/state`` checks both agree. More than one head is an error, as in Alembic."""
    revises: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(path.read_text()).body
                 if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                 and node.targets[0].id in ("revision", "down_revision")}
        revises[found["revision"]] = found.get("down_revision")
    heads = sorted(set(revises) - set(revises.values()))
    if len(heads) != 1:
        raise RuntimeError(f"the state migrations have {len(heads)} heads ({', '.join(heads) or 'none'}): chain them")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision in Alembic's own table (``alembic_version``, one row), None before the first migration."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


#: Backend -> (take, release) of a database-wide named lock (SQLite: :func:`_sqlite_migration_lock`).
_LOCK_SQL = {
    "postgresql": ("SELECT pg_advisory_lock(hashtext(:name))", "SELECT pg_advisory_unlock(hashtext(:name))"),
    "mysql": ("SELECT GET_LOCK(:name, 60)", "SELECT RELEASE_LOCK(:name)"),
}


#: How long a run waits for another one migrating the same SQLite state file.
SQLITE_MIGRATION_WAIT = 120.0


def _sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database (a ``file:`` URI's path too); None in memory."""
    database = engine.url.database or ""
    if str(engine.url.query.get("uri", "")).lower() in {"true", "1"}:
        if str(engine.url.query.get("mode", "")) == "memory":
            return None
        database = database.removeprefix("file:").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database)


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite has no named lock, and two runs migrating one fresh file both created
    ``alembic_version`` (the second failed: "table alembic_version already exists"). An exclusive
    ``flock`` on ``<database>.lock`` beside it orders them: taken before any connection is open, so
    a signal stops a run waiting here at once, and given up after :data:`SQLITE_MIGRATION_WAIT`
    with one line. Not on the database file itself: SQLite locks it with POSIX record locks, and
    closing ANY descriptor of that file drops all of this process's record locks on it (SQLite's
    "how to corrupt" page, 2.2), which surfaced as "disk I/O error". Where the lock file cannot be
    made (no ``fcntl``: Windows; a folder this user cannot write) nothing is locked, as before."""
    import time

    path = _sqlite_file(engine) if backend(engine) == "sqlite" else None
    try:
        import fcntl
    except ImportError:
        path = None
    held = None
    if path is not None:
        try:
            held = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (closed below)
        except OSError:
            held = None
    if held is None:
        yield
        return
    try:
        deadline = time.monotonic() + SQLITE_MIGRATION_WAIT
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MigrationBusy(f"KL_SYNC_STATE_URL: another run has been creating or upgrading {path} "
                                        f"for {SQLITE_MIGRATION_WAIT:.0f} s (it holds {held.name})") from None
                time.sleep(0.05)
        yield
    finally:
        held.close()  # the lock goes with it


class MigrationBusy(Failure):
    """Another process held the SQLite state's migration lock for too long (exit 2, one line)."""


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Several workers may start at once: only one of them migrates, the others wait for it (and
    then find the database migrated)."""
    statements = _LOCK_SQL.get(backend(conn.engine))
    if statements is None:
        yield
        return
    take, release = statements
    conn.execute(text(take), {"name": _LOCK_NAME})
    try:
        yield
    finally:
        conn.execute(text(release), {"name": _LOCK_NAME})


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the state database to ``revision``; a no-op when it is already there."""
    if revision == "head" and current_revision(engine) == head_revision():
        return head_revision()
    from alembic import command

    return _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> str | None:
    from alembic import command

    return _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, move: Callable[[Config, str], None], revision: str) -> str | None:
    """Run an Alembic command under the migration lock; the revision the database is at after it."""
    with _sqlite_migration_lock(engine), engine.connect() as conn:
        with _migration_lock(conn):
            conn.commit()
            move(_config(conn), revision)
            conn.commit()
    return current_revision(engine)


def open_state(url: str) -> Engine:
    """An engine on the state database, migrated to head.

    MySQL / MariaDB state runs at READ COMMITTED, PostgreSQL's default, rather than InnoDB's REPEATABLE
    READ: there, the sender's claim (an UPDATE over the outbox's status index) holds next-key locks up to the
    index's end, and the store steps' INSERT of new outbox rows into that gap deadlocked with it (1213)
    whenever two runs overlapped. Under READ COMMITTED InnoDB takes no gap locks for searches; every
    state transaction is already written for PostgreSQL's READ COMMITTED."""
    isolation = {"isolation_level": "READ COMMITTED"} if backend(url) == "mysql" else {}
    engine = make_engine(url, **isolation)
    upgrade(engine)
    return engine

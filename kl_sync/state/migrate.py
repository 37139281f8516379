"""Apply the state schema's Alembic migrations: on start (``open_state``) and by ``kl-sync db upgrade``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from kl_sync.db import backend, make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_NAME = "kl_sync_migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


#: Backend -> (take, release) of a database-wide named lock. SQLite serialises writers itself.
_LOCK_SQL = {
    "postgresql": ("SELECT pg_advisory_lock(hashtext(:name))", "SELECT pg_advisory_unlock(hashtext(:name))"),
    "mysql": ("SELECT GET_LOCK(:name, 60)", "SELECT RELEASE_LOCK(:name)"),
}


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Several workers may start at once: only one of them migrates, the others wait for it."""
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
    return _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> str | None:
    return _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, move: Callable[[Config, str], None], revision: str) -> str | None:
    """Run an Alembic command under the migration lock; the revision the database is at after it."""
    with engine.connect() as conn:
        with _migration_lock(conn):
            conn.commit()
            move(_config(conn), revision)
            conn.commit()
    return current_revision(engine)


def open_state(url: str) -> Engine:
    """An engine on the state database, migrated to head."""
    engine = make_engine(url)
    upgrade(engine)
    return engine

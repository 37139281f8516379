"""Apply the state schema's Alembic migrations: on start (``open_state``) and by ``kl-sync db upgrade``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

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


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Several workers may start at once: only one of them migrates, the others wait for it."""
    kind = backend(conn.engine)
    if kind == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": _LOCK_NAME})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": _LOCK_NAME})
    elif kind == "mysql":
        conn.execute(text("SELECT GET_LOCK(:name, 60)"), {"name": _LOCK_NAME})
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
    else:  # SQLite serialises writers itself.
        yield


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the state database to ``revision``; a no-op when it is already there."""
    if revision == "head" and current_revision(engine) == head_revision():
        return head_revision()
    with engine.connect() as conn:
        with _migration_lock(conn):
            conn.commit()
            command.upgrade(_config(conn), revision)
            conn.commit()
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    with engine.connect() as conn:
        with _migration_lock(conn):
            conn.commit()
            command.downgrade(_config(conn), revision)
            conn.commit()
    return current_revision(engine)


def open_state(url: str) -> Engine:
    """An engine on the state database, migrated to head."""
    engine = make_engine(url)
    upgrade(engine)
    return engine

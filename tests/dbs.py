"""Real databases for tests: a fresh, isolated database per use on SQLite, PostgreSQL and MariaDB.

PostgreSQL and MariaDB come from ``KL_SYNC_TEST_POSTGRES_URL`` / ``KL_SYNC_TEST_MYSQL_URL``; where one
is unset its tests skip with that reason (``.ci/run`` sets both). Each use gets its own schema
(PostgreSQL) or database (MariaDB), dropped afterwards, so reruns and parallel tests never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kl_sync.db import make_engine, normalize_url

BACKENDS = ("sqlite", "postgresql", "mysql")
ENV = {"postgresql": "KL_SYNC_TEST_POSTGRES_URL", "mysql": "KL_SYNC_TEST_MYSQL_URL"}


def server_url(backend: str) -> str:
    """The server's base URL for ``backend``, or skip the test with the reason."""
    url = os.environ.get(ENV[backend])
    if not url:
        pytest.skip(f"{ENV[backend]} is not set: {backend} tests skipped (.ci/run sets it)")
    return url


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new empty database on ``backend``; drop it afterwards."""
    name = f"kl_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
        return
    base = normalize_url(server_url(backend))
    admin = make_engine(base)
    if backend == "postgresql":
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        url = base.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        url = base.set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            if backend == "postgresql":
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            else:
                conn.execute(text(f"DROP DATABASE `{name}`"))
        admin.dispose()


def backend_params() -> list:
    return [pytest.param(b, id=b) for b in BACKENDS]


def is_server(url: str) -> bool:
    return make_url(url).get_backend_name() != "sqlite"

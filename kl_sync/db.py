"""Engines for the two databases, with the drivers kl-sync ships (psycopg 3, PyMySQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import threading
import weakref

from sqlalchemy import BigInteger, Engine, Integer, Pool, Table, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.engine import URL, make_url

#: Integer ids, in the store's contract and the state's tables alike: BigInteger on servers, but
#: SQLite only autoincrements an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

# SQLAlchemy's default drivers for these names (psycopg2, mysqlclient) are not installed; ours are.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def normalize_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() in {"mysql", "mariadb"} and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def backend(engine_or_url: Engine | str | URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included)."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def driver_insert(dialect: Dialect, table: Table, names: list[str] | tuple[str, ...]) -> tuple[str, str]:
    """``INSERT INTO <table> (<names>) VALUES `` and one row's placeholders, in the driver's own
    parameter style: for bulk inserts sent with ``exec_driver_sql``, which skips SQLAlchemy's per-row
    parameter processing (the values must already be what the driver takes)."""
    preparer = dialect.identifier_preparer
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    into = f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)}) VALUES "
    return into, f"({', '.join([mark] * len(names))})"


def _is_sqlite_uri(url: URL) -> bool:
    """``sqlite:///file:…?mode=ro&uri=true``: the database is a URI SQLite opens itself, not a path."""
    return str(url.query.get("uri", "")).lower() in {"true", "1"}


def _text_per_value(data: bytes) -> str:
    """SQLite stores whatever text it is given, UTF-8 or not. Decoding each value on its own, with the
    bytes that are not UTF-8 kept as lone surrogates (``surrogateescape``), lets one bad value fail
    its row (the steps check every text, :func:`kl_sync.payloads.text_problem`) instead of the whole
    query ("Could not decode to UTF-8 column …", naming no row)."""
    return str(data, "utf-8", "surrogateescape")


def _switch_to_wal(cursor: Any, *, patience: float) -> None:
    """``PRAGMA journal_mode=WAL``, once per database (the mode is kept in the file). Switching needs
    the file to itself, and SQLite answers "database is locked" at once, without its busy timeout,
    when another connection is writing a file not yet in WAL: a second run starting while the first
    creates the state database. Then try again, for as long as the busy timeout would have waited."""
    import sqlite3
    import time

    deadline = time.monotonic() + patience
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


#: Every engine :func:`make_engine` made in this process (:func:`dispose_engines`).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def dispose_engines() -> None:
    """Close every pooled connection of the engines this process made, as the interpreter's teardown
    does: SQLite then checkpoints a WAL database and removes its ``-wal`` and ``-shm`` files, so the
    database file alone holds every commit (for a process ending without its teardown,
    :func:`kl_sync.app.cli.exit_now`)."""
    for engine in list(_ENGINES):
        try:
            engine.dispose()
        except Exception:  # noqa: BLE001 - a database gone by now: nothing left to close
            pass


def make_engine(url: str | URL, *, sqlite_wal: bool = True, text_per_value: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get their folder created (not for a ``file:`` URI), a busy
    timeout and (for our own state database) WAL. The store is opened without switching its journal
    mode: we only read it. ``text_per_value``: SQLite text that is not UTF-8 is read, not refused
    (:func:`_text_per_value`; the store's readers)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not _is_sqlite_uri(parsed):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            if text_per_value:
                dbapi_conn.text_factory = _text_per_value
            # WAL lets readers (status, notebooks) run while a sync writes; NORMAL is safe under WAL.
            cursor = dbapi_conn.cursor()
            if sqlite_wal:
                _switch_to_wal(cursor, patience=float(kwargs["connect_args"].get("timeout", 30)))
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        _ENGINES.add(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(parsed, **kwargs)
    _ENGINES.add(engine)
    return engine


#: The pool entries the main thread has checked out (ids of their connection records).
_MAIN_THREAD_CHECKOUTS: set[int] = set()


@event.listens_for(Pool, "checkout")
def _main_thread_checked_out(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        _MAIN_THREAD_CHECKOUTS.add(id(record))


@event.listens_for(Pool, "checkin")
def _checked_in(_dbapi_conn: Any, record: Any) -> None:
    if record is not None:
        _MAIN_THREAD_CHECKOUTS.discard(id(record))


def in_database_call() -> bool:
    """Whether the main thread holds a database connection (of any engine) right now: a signal
    handler must not raise there (:class:`kl_sync.pipeline.Interruption`). An exception raised
    between a connection's checkout and its checkin could leave a transaction open and SQLite's
    write lock held by a connection nothing closes. A connection that never comes back (invalidated)
    keeps this true: signals then wait for the run's stop points, which is slower, never unsafe."""
    return bool(_MAIN_THREAD_CHECKOUTS)


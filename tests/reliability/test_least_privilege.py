"""7. Least privilege: the whole sync runs with the store read through a PostgreSQL role that may only
SELECT the four store tables, and sends exactly what a run with full rights sends."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from kl_sync.db import make_engine, normalize_url
from kl_sync.emulator import running_emulator
from kl_sync.app.run import run_sync
from tests.dbs import fresh_database, server_url
from tests.reliability.helpers import event_facts, make_store, reference_run, settings_for

STORE_TABLES = ("customers", "orders", "order_items", "system_log")


def test_the_sync_needs_only_select_on_the_four_store_tables(tmp_path: Path) -> None:
    admin_url = server_url("postgresql")  # skips, with the reason, without a PostgreSQL server
    role = f"kl_reader_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    admin = make_engine(normalize_url(admin_url))
    with fresh_database("postgresql", tmp_path) as store_url:
        make_store(store_url, customers=15, seed=12, years=0.3)
        schema = make_url(store_url).query["options"].removeprefix("-csearch_path=")
        with admin.begin() as conn:
            # The password is random hex: safe to inline (CREATE ROLE takes no bind parameters).
            conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            for table in STORE_TABLES:
                conn.execute(text(f'GRANT SELECT ON "{schema}".{table} TO "{role}"'))
        reader_url = make_url(store_url).set(username=role, password=password).render_as_string(hide_password=False)
        try:
            reader = make_engine(reader_url)
            with reader.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text("UPDATE customers SET email = NULL"))
            reader.dispose()

            reference = reference_run(store_url, tmp_path)
            with running_emulator(tmp_path / "emulator", api_keys=("pk_reader",)) as emu:
                settings = settings_for(reader_url, f"sqlite:///{tmp_path / 'state.db'}", emu.base_url, "pk_reader")
                counts = run_sync(settings, from_start=True)
                events = emu.events()
            assert counts["send"]["sent_events"] > 0
            assert event_facts(events) == reference["events"]
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
    admin.dispose()

"""Late rows: a ``system_log`` row whose transaction commits after a later row's was read has an id
below the parse cursor. The parse step re-reads ``KL_SYNC_LOG_LOOKBACK_IDS`` ids before its cursor, so
the row is still queued, once; rows beyond the lookback are the limit, and the README says so."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from kl_sync import state as st
from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.parse import parse_log
from tests.planting import T0, add, customer, log, plant

NOW = dt.datetime(2024, 5, 20, 12, 0, tzinfo=dt.UTC)


def _keys(state) -> list[str]:
    with state.connect() as conn:
        return sorted(conn.execute(select(outbox.c.key)).scalars())


def _consent_checked(state) -> None:
    """What the suppress step does after reading the touched customers."""
    with state.begin() as conn:
        st.untouch_customers(conn, customer_ids=st.touched_customer_ids(conn, limit=100))


def test_a_log_row_committed_late_below_the_cursor_is_queued_once(store_url, state_url):
    store = plant(store_url, customers_rows=[customer(1)],
                  log_rows=[log(i, "shipping.email", 1, T0 + dt.timedelta(minutes=i)) for i in (1, 2, 3, 5, 6)])
    state = open_state(state_url)
    settings = load_settings(chunk_size=2)
    assert parse_log(store, state, settings, now=NOW).queued == 5
    with state.connect() as conn:
        assert st.get_cursor(conn, "system_log") == [6]

    _consent_checked(state)
    add(store, "system_log", [log(4, "shipping.email", 1, T0 + dt.timedelta(minutes=4))])  # id 4 commits late
    late = parse_log(store, state, settings, now=NOW)
    assert (late.rows_read, late.queued, late.dead_letters) == (0, 1, 0)  # no row past the cursor; one late
    with state.connect() as conn:
        assert st.touched_customer_ids(conn, limit=10) == [1]  # its customer's consent is checked
    assert _keys(state) == [f"log:{i}" for i in range(1, 7)]
    _consent_checked(state)
    again = parse_log(store, state, settings, now=NOW)
    assert (again.rows_read, again.queued, again.dead_letters) == (0, 0, 0)
    with state.connect() as conn:
        assert st.touched_customer_ids(conn, limit=10) == []  # re-read rows that queue nothing touch no one
    with state.connect() as conn:
        assert st.get_cursor(conn, "system_log") == [6]  # the re-read never moves the cursor back


def test_the_lookback_is_a_setting_and_a_late_row_beyond_it_waits_for_a_from_start(store_url, state_url):
    store = plant(store_url, customers_rows=[customer(1)],
                  log_rows=[log(i, "shipping.email", 1, T0 + dt.timedelta(minutes=i)) for i in (1, 2, 3, 4, 6)])
    state = open_state(state_url)
    settings = load_settings(chunk_size=10, log_lookback_ids=1)
    parse_log(store, state, settings, now=NOW)
    add(store, "system_log", [log(5, "shipping.email", 1), log(3_000, "shipping.email", 1)])
    assert parse_log(store, state, settings, now=NOW).queued == 2  # id 5 is within 1 id of the cursor 6
    add(store, "system_log", [log(2_000, "shipping.email", 1)])  # 1,000 ids below the cursor 3,000
    assert parse_log(store, state, settings, now=NOW).queued == 0
    assert parse_log(store, state, settings, from_start=True, now=NOW).queued == 1
    assert "log:2000" in _keys(state)

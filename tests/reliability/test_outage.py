"""Failure is visible (issue 14, item 5): a run in which Klaviyo could not be reached, or answered
only retryable errors, and nothing due was delivered is recorded ``failed`` and ends with ONE line
(how many rows wait, when they retry) and exit code 4; a partly delivered run says so and is ok."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path

import pytest
from sqlalchemy import select

from kl_sync import state as st
from kl_sync.failures import EXIT_KLAVIYO_UNREACHABLE, Failure
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.pipeline import run_pipeline
from kl_sync.retry import Retries
from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import runs
from tests.reliability.helpers import BULK_EVENTS

FAST = Retries(attempts=2, first_wait=0.01, longest_wait=0.01)


def _queue(engine, n: int) -> None:
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem(f"log:{i}", "log_event", {
            "metric": "shipping.email", "time": "2026-10-01T10:00:00+00:00", "unique_id": f"log:{i}",
            "properties": {"n": i}, "profile": {"email": f"outage-{i % 40}@example.com"}, "backfill": True,
        }) for i in range(n)])


def _statuses(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(runs.c.status)).scalars())


def _run(state_url: str, base_url: str, key: str) -> dict:
    settings = load_settings(state_url=state_url, klaviyo_base_url=base_url, klaviyo_api_key=key)
    return run_pipeline(settings, lambda: contextlib.closing(KlaviyoClient(key, base_url, retries=FAST)),
                        steps=["send"])


def test_klaviyo_answering_only_500_fails_the_run_with_one_line(tmp_path: Path, emulator) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    _queue(engine, 472)
    emulator.fail_next(BULK_EVENTS, 500, count=50)
    with pytest.raises(Failure) as failed:
        _run(state_url, emulator.base_url, emulator.api_key)
    assert failed.value.exit_code == EXIT_KLAVIYO_UNREACHABLE
    assert re.fullmatch(r"Klaviyo unreachable: 472 rows wait for retry, next at \d\d:\d\d UTC", failed.value.line)
    assert _statuses(engine) == ["failed"]
    assert emulator.events() == []


def test_an_order_s_lines_waiting_with_it_count_among_the_rows_that_wait(tmp_path: Path, emulator) -> None:
    """An Ordered Product goes only after its Placed Order was accepted: when Klaviyo answers 500 to
    the Placed Order, its lines are handed back untouched to wait with it, and they wait too."""
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    _queue(engine, 4)
    line = {"ProductID": "p1", "ProductName": "Kale", "Quantity": 1, "ItemPrice": 4.25, "RowTotal": 4.25}
    order = {"metric": "Placed Order", "time": "2026-10-01T10:00:00+00:00", "value": 8.5, "value_currency": "USD",
             "properties": {"OrderId": "1", "Items": [line, line]}, "profile": {"email": "outage-1@example.com"},
             "backfill": True}
    with engine.begin() as conn:
        st.enqueue(conn, [st.OutboxItem("order:1:placed", "order_event", {**order, "unique_id": "order:1:placed"}),
                          *(st.OutboxItem(f"order:1:item:{n}", "ordered_product",
                                          {**order, "metric": "Ordered Product", "unique_id": f"order:1:item:{n}",
                                           "value": 4.25, "properties": {"OrderId": "1", **line}})
                            for n in (11, 12))])
    emulator.fail_next(BULK_EVENTS, 500, count=50)
    with pytest.raises(Failure) as failed:
        _run(state_url, emulator.base_url, emulator.api_key)
    assert re.fullmatch(r"Klaviyo unreachable: 7 rows wait for retry, next at \d\d:\d\d UTC", failed.value.line)
    assert emulator.events() == []


def test_a_closed_port_fails_the_run_saying_how_many_rows_wait(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    _queue(engine, 7)
    with pytest.raises(Failure) as failed:
        _run(state_url, f"http://127.0.0.1:{port}", "pk_closed")
    assert failed.value.exit_code == EXIT_KLAVIYO_UNREACHABLE
    assert failed.value.line.startswith("Klaviyo unreachable: Klaviyo get_profiles: ConnectionError: ")
    assert failed.value.line.endswith("; 7 rows wait for the next run")
    assert "\n" not in failed.value.line
    assert _statuses(engine) == ["failed"]


def test_a_partly_delivered_run_says_so_and_is_ok(tmp_path: Path, emulator) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_state(state_url)
    _queue(engine, 1500)  # two bulk requests of 1,000 and 500: the first fails both its attempts
    emulator.fail_next(BULK_EVENTS, 500, count=2)
    counts = _run(state_url, emulator.base_url, emulator.api_key)
    assert re.fullmatch(r"partly delivered: 500 sent, 1000 wait for retry, next at \d\d:\d\d UTC",
                        counts["send"]["delivery"])
    assert _statuses(engine) == ["ok"]

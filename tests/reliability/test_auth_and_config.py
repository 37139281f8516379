"""5. Auth and config failures: a refused key (401) or a key without the scope (403) stops the run
with one clear line (exit 3) before the store is read, and marks nothing sent; a database that cannot
be reached fails with the reason, naming the setting, not a traceback (exit 2) — from the CLI, and as
a failed Prefect flow run; Klaviyo unreachable fails the flow run too, with the line of exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from kl_sync.app.cli import main
from kl_sync.db import make_engine
from kl_sync.emulator import running_emulator
from kl_sync.settings import SettingsError
from kl_sync import state as st
from kl_sync.state.tables import PENDING, outbox
from tests.reliability.helpers import make_store

UNREACHABLE_PG = "postgresql://kl_sync@127.0.0.1:1/shop"
UNREACHABLE_MYSQL = "mysql://kl_sync@127.0.0.1:1/state"


@pytest.mark.parametrize(("key", "status"), [("pk_revoked", 401), ("pk_no_scope", 403)])
def test_a_refused_key_stops_the_run_in_one_line_and_marks_nothing_sent(key, status, tmp_path: Path, monkeypatch, capsys) -> None:
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=10, seed=3, years=0.3)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with running_emulator(tmp_path / "emulator", api_keys=("pk_valid",), forbidden_keys=("pk_no_scope",)) as emu:
        for name, value in {"KL_SYNC_STORE_URL": store_url, "KL_SYNC_STATE_URL": state_url,
                            "KLAVIYO_BASE_URL": emu.base_url, "KLAVIYO_API_KEY": key,
                            "KL_SYNC_SEND_BATCH_SIZE": "50"}.items():
            monkeypatch.setenv(name, value)
        assert main(["sync", "--no-prefect"]) == 3
        journal = emu.journal()
        stored = emu.events()

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kl-sync: Klaviyo refused the API key, nothing more was sent: ")
    assert str(status) in err and "Traceback" not in err
    assert stored == [] and [line["status"] for line in journal] == [status]  # stopped at the key check
    with make_engine(state_url).connect() as conn:
        rows = conn.execute(select(outbox.c.status, outbox.c.attempts, outbox.c.lease_owner)).all()
        (run,) = st.recent_runs(conn)
    assert rows == []  # the key is checked before the store is read
    assert run["status"] == "failed" and str(status) in run["error"]


@pytest.mark.parametrize(("setting", "url"), [("KL_SYNC_STORE_URL", UNREACHABLE_PG), ("KL_SYNC_STATE_URL", UNREACHABLE_MYSQL)])
def test_an_unreachable_database_is_one_line_naming_the_setting(setting, url, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KL_SYNC_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv(setting, url)
    assert main(["sync", "--no-prefect"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"kl-sync: configuration error: {setting}: cannot connect: ")


def test_a_database_error_in_another_command_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KL_SYNC_STATE_URL", UNREACHABLE_PG)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("kl-sync: configuration error: KL_SYNC_STATE_URL: cannot connect: ")


@pytest.mark.prefect
def test_an_unreachable_store_fails_the_flow_run_with_the_reason(prefect_server, tmp_path: Path, monkeypatch) -> None:
    from flows.sync import sync

    monkeypatch.setenv("KL_SYNC_STORE_URL", UNREACHABLE_PG)
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    state = sync(return_state=True)
    assert state.is_failed()
    # The flow run's message is the line `kl-sync` prints (without its "kl-sync: "), no exception type.
    assert state.message.startswith("configuration error: KL_SYNC_STORE_URL: cannot connect: connection failed")
    assert "\n" not in state.message and "Error:" not in state.message.split(": ", 1)[0]
    with pytest.raises(SettingsError, match="KL_SYNC_STORE_URL: cannot connect") as raised:
        state.result()
    assert raised.value.exit_code == 2


@pytest.mark.prefect
def test_klaviyo_unreachable_fails_the_flow_run_with_the_same_line(prefect_server, tmp_path: Path, monkeypatch) -> None:
    import socket

    from flows.sync import sync
    from kl_sync.failures import EXIT_KLAVIYO_UNREACHABLE, Failure

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KL_SYNC_STORE_URL", make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=5, seed=3, years=0.2))
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("KLAVIYO_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_closed_port")
    state = sync(return_state=True)
    assert state.is_failed()
    # The same line `kl-sync sync` prints (exit 4), as the flow run's message: a Prefect run shows Failed, not Completed.
    assert state.message.startswith("Klaviyo unreachable: ") and "\n" not in state.message
    with pytest.raises(Failure) as raised:
        state.result()
    assert raised.value.exit_code == EXIT_KLAVIYO_UNREACHABLE and str(raised.value) == state.message

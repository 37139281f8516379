"""6. Secrets: with a canary API key, nothing kl-sync leaves behind contains it — the command's output
and logs, the Prefect run's logs and artifacts, the state database (dead letters included), the
emulator's journal, and the text of every exception it raised."""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import traceback
from pathlib import Path

import pytest

from kl_sync.emulator import FaultSpec, running_emulator
from kl_sync.klaviyo.errors import AuthError, KlaviyoError
from kl_sync.app.run import run_sync
from tests.reliability.helpers import child_env, make_store, run_kl_sync, settings_for

FAULTS = FaultSpec(rate=0.3, mix={"429": 1, "500": 1, "drop": 1, "drop_after_commit": 1}, seed=4, retry_after=0.2)


def _canary() -> str:
    return f"pk_canary_{secrets.token_hex(12)}"


def _exception_texts(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)), pickle.dumps(exc).hex(),
                      pickle.dumps(exc).decode("latin-1")])


def _files_text(folder: Path) -> str:
    """Every file under ``folder`` (databases, journals, logs), as bytes decoded leniently."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file())


def test_the_key_appears_in_no_output_file_or_exception(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, wrong_key = _canary(), _canary()
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=15, seed=6, years=0.3)
    caplog.set_level(logging.DEBUG)
    with running_emulator(tmp_path / "emulator", api_keys=(key,), faults=FAULTS) as emu:
        # A real run in a child process: everything it prints.
        env = child_env(KL_SYNC_STORE_URL=store_url, KL_SYNC_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
                        KLAVIYO_BASE_URL=emu.base_url, KLAVIYO_API_KEY=key, KL_SYNC_SEND_BATCH_SIZE="40")
        ok = run_kl_sync("sync", "--no-prefect", "--from-start", "--json", env=env, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        refused = run_kl_sync("sync", "--no-prefect", "--from-start",
                              env={**env, "KLAVIYO_API_KEY": wrong_key,
                                   "KL_SYNC_STATE_URL": f"sqlite:///{tmp_path / 'state-refused.db'}"}, cwd=tmp_path)
        assert refused.returncode == 3 and "refused the API key" in refused.stderr

        # The same in this process, with every logger at DEBUG, and the exceptions themselves.
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state-inprocess.db'}", emu.base_url, wrong_key)
        with pytest.raises(AuthError) as auth_error:
            run_sync(settings, from_start=True)
        # Every write refused: Klaviyo's error texts become dead letters in the state database.
        emu.set_faults(FaultSpec(rate=1.0, mix={"400": 1}, seed=1))
        settings = settings_for(store_url, f"sqlite:///{tmp_path / 'state-refusals.db'}", emu.base_url, key)
        counts = run_sync(settings, from_start=True)
        assert counts["send"]["dead_letters"] > 0 and counts["send"]["sent_events"] == 0
        emu.set_faults(FaultSpec(rate=1.0, mix={"drop": 1}, seed=1))
        from kl_sync.klaviyo import KlaviyoClient
        from kl_sync.retry import Retries

        with KlaviyoClient(key, emu.base_url, retries=Retries(1, first_wait=0.5, longest_wait=30.0)) as client, pytest.raises(KlaviyoError) as dropped:
            client.post("/api/event-bulk-create-jobs", {"data": {}}, endpoint="bulk_create_events")
        texts = [repr(client), repr(settings), str(settings.model_dump()), repr(client.__dict__)]
    emu_journal = (tmp_path / "emulator" / "journal.jsonl").read_text()
    assert emu_journal.count("Klaviyo-API-Key ***") > 0

    everything = "\n".join([
        ok.stdout, ok.stderr, refused.stdout, refused.stderr, caplog.text,
        "\n".join(r.getMessage() + repr(r.args) for r in caplog.records),
        _exception_texts(auth_error.value), _exception_texts(dropped.value), *texts,
        _files_text(tmp_path),  # state databases (with their dead letters and run errors), journal, emulator data
    ])
    assert key not in everything and wrong_key not in everything
    assert key[len("pk_canary_"):] not in everything  # nor its random part alone


@pytest.mark.prefect
def test_the_key_appears_in_no_prefect_log_artifact_or_run(prefect_server, tmp_path: Path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client

    from flows.sync import sync

    key = _canary()
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=10, seed=8, years=0.3)
    with running_emulator(tmp_path / "emulator", api_keys=(key,), faults=FAULTS) as emu:
        monkeypatch.setenv("KL_SYNC_STORE_URL", store_url)
        monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
        monkeypatch.setenv("KLAVIYO_BASE_URL", emu.base_url)
        monkeypatch.setenv("KLAVIYO_API_KEY", key)
        state = sync(from_start=True, return_state=True)
        assert state.is_completed()
        # A refused key on a fresh state database (so there is something to send): the failed run's records too.
        monkeypatch.setenv("KLAVIYO_API_KEY", _canary() + "x")
        monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state-refused.db'}")
        failed = sync(return_state=True)
        assert failed.is_failed()

    async def everything_prefect_kept() -> str:
        async with get_client() as client:
            records = [
                *await client.read_artifacts(), *await client.read_logs(),
                *await client.read_flow_runs(), *await client.read_task_runs(),
            ]
            return "\n".join(r.model_dump_json() for r in records)

    kept = asyncio.run(everything_prefect_kept())
    assert "kl-sync-summary" in kept
    assert key not in kept and "pk_canary_" not in kept
    assert "pk_canary_" not in _files_text(tmp_path)

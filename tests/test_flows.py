"""The Prefect layer, end to end: one session-scoped test harness for the whole suite."""

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from kl_sync.app.cli import main
from kl_sync.db import make_engine
from kl_sync.settings import get_settings
from kl_sync.store.generate import generate_store

END = dt.datetime(2026, 11, 1, 12, 0)


@pytest.mark.prefect
def test_sync_flow_end_to_end(prefect_server, tmp_path, monkeypatch, emulator, capsys):
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.sync import sync

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    generate_store(make_engine(store_url), customers_count=30, seed=11, end=END)
    monkeypatch.setenv("KL_SYNC_STORE_URL", store_url)
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("KLAVIYO_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KLAVIYO_API_KEY", emulator.api_key)
    monkeypatch.setenv("KL_SYNC_VERIFY_AFTER", "PT0S")  # the emulator processes events at once

    # A dry run through the CLI (on a state of its own) queues but sends nothing, and prints what it would send.
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'dry-state.db'}")
    assert main(["sync", "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    dry = json.loads(out[out.index("{"):])
    assert dry["send"]["dry_run"] is True and dry["send"]["preview"]
    assert emulator.events() == []
    monkeypatch.setenv("KL_SYNC_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    get_settings.cache_clear()  # the CLI reads its settings once per process

    import gc

    from kl_sync.app.run import SYNC_GC_THRESHOLD

    from tests.reliability.helpers import collector_thresholds

    before = gc.get_threshold()
    with collector_thresholds() as during:
        counts = sync()
    # The flow (production's path) collects as `kl-sync sync` does, and gives the threshold back.
    assert SYNC_GC_THRESHOLD in during and gc.get_threshold() == before
    queued = counts["parse"]["queued"] + counts["orders"]["queued"]
    sent_events = emulator.events()
    # The steps read in a process of their own while the send ran beside them, as in `kl-sync sync`.
    assert counts["store_process"]["peak_rss_mb"] > 0
    assert queued == dry["parse"]["queued"] + dry["orders"]["queued"] > 0
    assert counts["send"]["sent_events"] == len(sent_events) > 0
    assert len({e["unique_id"] for e in sent_events}) == len(sent_events)
    assert Counter(e["metric"] for e in sent_events)["Placed Order"] > 0
    # The verify task read back everything just sent: every event and every suppression.
    verify = counts["verify"]
    assert verify["verified"] == verify["rows_read"] == len(sent_events) + counts["send"]["sent_suppressions"]

    again = sync()
    assert again["send"]["rows_read"] == 0 and len(emulator.events()) == len(sent_events)
    assert again["verify"]["rows_read"] == 0

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs()

    names = {task_run.name.rsplit("-", 1)[0] for task_run in asyncio.run(task_runs())}
    assert {"read and send", "verify delivery", "read consent back"} <= names
    keys = {a.key for a in asyncio.run(artifacts())}
    assert {"kl-sync-summary", "kl-sync-dead-letters", "kl-sync-delivery", "kl-sync-consent"} <= keys

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {c["stream"] for c in status["cursors"]} == {"system_log", "orders", "customers", "klaviyo_consent"}
    assert status["runs"][0]["status"] == "ok"
    assert {(row["sent"], row["missing"]) for row in status["delivery"] if row["kind"] != "profile"} == {(0, 0)}
    assert main(["dead-letters", "list", "--json"]) == 0
    letters = json.loads(capsys.readouterr().out)
    assert letters and all(d["reason"] for d in letters)


def test_every_deployment_entrypoint_loads_its_flow():
    import yaml
    from prefect.flows import Flow, load_flow_from_entrypoint

    repo = Path(__file__).resolve().parent.parent
    deployments = yaml.safe_load((repo / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in deployments} == {"incremental", "initial-sync", "send-outbox", "verify-delivery"}
    for deployment in deployments:
        path, _, name = deployment["entrypoint"].partition(":")
        loaded = load_flow_from_entrypoint(f"{repo / path}:{name}")
        assert isinstance(loaded, Flow), deployment["entrypoint"]
    assert load_flow_from_entrypoint(f"{repo / 'flows/steps.py'}:send_outbox").name == "kl-sync-send"


def _readme_deployment_names() -> list[str]:
    """The deployment names of README's table, as written (`flow/deployment`)."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return re.findall(r"^\| `([a-z-]+/[a-z-]+)` \| `flows/", readme, flags=re.MULTILINE)


@pytest.mark.prefect
def test_readme_deploy_commands_and_every_deployment_name_as_written(prefect_server, tmp_path):
    """README's `prefect work-pool create`, `KL_SYNC_HOME=$PWD prefect deploy --all` and a `prefect
    deployment run` of each deployment name of its table, against the session's Prefect server."""
    import os
    import shutil
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    repo = Path(__file__).resolve().parent.parent
    home = tmp_path / "checkout"  # prefect deploy writes beside prefect.yaml: a copy, not the repository
    home.mkdir()
    for name in ("prefect.yaml", "flows", "kl_sync"):
        source = repo / name
        (shutil.copytree(source, home / name, ignore=shutil.ignore_patterns("__pycache__"))
         if source.is_dir() else shutil.copy(source, home / name))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "KL_SYNC_HOME": str(home), "PYTHONPATH": str(home)}
    prefect = [sys.executable, "-m", "prefect"]

    def run(*args: str) -> str:
        done = subprocess.run([*prefect, *args], cwd=home, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    run("work-pool", "create", "kl-sync", "--type", "process")
    run("deploy", "--all")
    names = _readme_deployment_names()
    assert len(names) == 4 and "kl-sync-send/send-outbox" in names
    for name in names:
        assert "Created flow run" in run("deployment", "run", name)

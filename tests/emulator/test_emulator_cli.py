"""``kl-sync emulator`` / ``python -m kl_sync.emulator``: arguments, and a real foreground server."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kl_sync.emulator.cli import add_arguments, parse_fault_mix, run
from tests.emulator.klaviyo_bodies import headers, single_event


def test_every_option_has_help_text():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, action.dest


def test_defaults_and_repeatable_keys():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--api-key", "pk_a", "--api-key", "pk_b", "--faults", "0.1"])
    assert args.api_keys == ["pk_a", "pk_b"]
    assert (args.host, args.rate_limits, args.rate_scale, args.faults) == ("127.0.0.1", "off", 1.0, 0.1)


def test_fault_mix_parses_kinds_and_weights():
    assert parse_fault_mix("429,500:2, drop ,slow:0.5") == {"429": 1.0, "500": 2.0, "drop": 1.0, "slow": 0.5}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_options_exit_2_without_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path), "--faults", "0.5", "--fault-mix", "teapot"])
    assert run(args) == 2
    assert "teapot" in capsys.readouterr().err


def test_python_m_serves_until_terminated(tmp_path: Path):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kl_sync.emulator", "--port", str(port), "--data-dir", str(tmp_path / "acct"),
         "--api-key", "pk_cli", "--rate-limits", "real"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/api/metrics", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"emulator did not start: {process.communicate()[1]}")
                time.sleep(0.1)
        response = requests.post(f"{url}/api/events", json=single_event(), headers=headers("pk_cli"), timeout=30)
        assert response.status_code == 202
        assert response.headers["RateLimit-Limit"] == "3500"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "pk_cli" not in stderr
    assert (tmp_path / "acct" / "emulator.db").exists()
    assert '"status":202' in (tmp_path / "acct" / "journal.jsonl").read_text()

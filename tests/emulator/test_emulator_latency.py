"""``--latency``: every request and its answer take time on the way, concurrently, as over a network."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import pytest
import requests

from kl_sync.emulator import EmulatorConfig, running_emulator
from kl_sync.emulator.cli import add_arguments, config_from, run
from kl_sync.emulator.latency import LatencyMiddleware
from tests.emulator.klaviyo_bodies import headers


def _get_metrics(base_url: str, answered: list[float]) -> None:
    answer = requests.get(f"{base_url}/api/metrics", headers=headers(), timeout=10)
    answered.append(time.time())
    assert answer.status_code == 200


def test_a_request_arrives_after_half_its_round_trip_and_is_answered_after_all_of_it(tmp_path: Path):
    with running_emulator(tmp_path / "acct", latency=0.6) as emu:
        sent = time.time()
        answered: list[float] = []
        _get_metrics(emu.base_url, answered)
        (line,) = emu.journal()
    # The journal stamps arrival: half the round trip after the client sent it.
    assert line["ts"] >= sent + 0.3
    assert answered[0] >= sent + 0.6


def test_requests_travel_concurrently(tmp_path: Path):
    """Six requests sent at once all arrive before the first answer is back: one request on the
    way never holds up another (a client keeping several in flight gains from it)."""
    with running_emulator(tmp_path / "acct", latency=2.0) as emu:
        answered: list[float] = []
        threads = [threading.Thread(target=_get_metrics, args=(emu.base_url, answered)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        arrivals = [line["ts"] for line in emu.journal()]
    assert len(arrivals) == len(answered) == 6
    assert max(arrivals) < min(answered)


def test_errors_are_delayed_too(tmp_path: Path):
    with running_emulator(tmp_path / "acct", latency=0.4) as emu:
        sent = time.time()
        answer = requests.get(f"{emu.base_url}/api/metrics", timeout=10)  # no key
        assert answer.status_code == 401
        assert time.time() >= sent + 0.4


def test_jitter_draws_each_round_trip_from_latency_plus_or_minus_jitter_repeatably():
    def draws(seed: int) -> list[float]:
        middleware = LatencyMiddleware(None, latency=0.25, jitter=0.1, seed=seed)
        return [middleware.round_trip() for _ in range(200)]

    first = draws(7)
    assert first == draws(7) and first != draws(8)
    assert all(0.15 <= d <= 0.35 for d in first)
    assert max(first) - min(first) > 0.15  # spread over the range, not one value
    # Never a negative delay, however large the jitter.
    wide = LatencyMiddleware(None, latency=0.05, jitter=1.0, seed=1)
    assert min(wide.round_trip() for _ in range(200)) == 0.0


def test_latency_and_jitter_from_the_command_line():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from(parser.parse_args(["--latency", "0.25", "--jitter", "0.05", "--fault-seed", "3"]))
    assert (config.latency, config.jitter, config.lose_seed) == (0.25, 0.05, 3)
    assert (config_from(parser.parse_args([])).latency, config_from(parser.parse_args([])).jitter) == (0.0, 0.0)
    for bad in ({"latency": -0.1}, {"jitter": -1}):
        with pytest.raises(ValueError, match="must not be negative"):
            EmulatorConfig(**bad)


def test_a_negative_latency_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--data-dir", str(tmp_path), "--latency", "-1"])) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "latency" in err

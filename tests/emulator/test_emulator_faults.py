"""Injected faults: seeded and repeatable, applied before a write is processed, and a drop is a real
TCP reset with no HTTP answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from kl_sync.emulator import FaultSpec, running_emulator
from tests.emulator.klaviyo_bodies import Api, bulk_entry, bulk_events, event, single_event

BULK = "/api/event-bulk-create-jobs"


def _bulk(tag: str) -> dict:
    return bulk_events([bulk_entry("fault@example.com", [event(unique_id=tag)])])


def _statuses(data_dir: Path, spec: FaultSpec, count: int) -> tuple[list[int | str], int]:
    with running_emulator(data_dir, faults=spec) as emu:
        api = Api(emu.base_url)
        seen: list[int | str] = []
        for i in range(count):
            try:
                seen.append(api.post(BULK, _bulk(f"f{i}")).status_code)
            except requests.ConnectionError:
                seen.append("drop")
                api = Api(emu.base_url)
        return seen, len(emu.events())


def test_the_same_seed_gives_the_same_faults_and_faulted_writes_store_nothing(tmp_path: Path):
    spec = FaultSpec(rate=0.5, mix={"429": 1, "500": 1, "503": 1, "drop": 1}, seed=7)
    first, stored = _statuses(tmp_path / "a", spec, 16)
    again, _ = _statuses(tmp_path / "b", spec, 16)
    assert first == again
    assert {202, 429, 500, 503, "drop"} <= set(first)
    assert stored == first.count(202)
    other, _ = _statuses(tmp_path / "c", FaultSpec(rate=0.5, mix=spec.mix, seed=8), 16)
    assert other != first


def test_injected_errors_carry_klaviyos_body_and_429_a_retry_after(fresh_emu, fresh_api):
    fresh_emu.fail_next(BULK, 429)
    fresh_emu.fail_next(BULK, 503)
    fresh_emu.fail_next(BULK, 429, retry_after=2.5)
    first = fresh_api.post(BULK, _bulk("a"))
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert first.json()["errors"][0]["code"] == "throttled"
    second = fresh_api.post(BULK, _bulk("a"))
    assert second.status_code == 503 and second.json()["errors"][0]["code"] == "service_unavailable"
    assert fresh_api.post(BULK, _bulk("a")).headers["Retry-After"] == "2.500"
    assert fresh_api.post(BULK, _bulk("a")).status_code == 202
    assert len(fresh_emu.events()) == 1


def test_a_drop_resets_the_connection_and_stores_nothing(fresh_emu, fresh_api):
    fresh_emu.fail_next(BULK, "drop")
    with pytest.raises(requests.ConnectionError):
        fresh_api.post(BULK, _bulk("d"))
    assert fresh_emu.events() == []
    line = fresh_emu.journal()[-1]
    assert (line["status"], line["fault"], line["path"]) == (None, "drop", BULK)
    assert Api(fresh_emu.base_url).post(BULK, _bulk("d")).status_code == 202


def test_a_random_drop_is_a_reset_too(tmp_path: Path):
    with running_emulator(tmp_path / "k", faults=FaultSpec(rate=1.0, mix={"drop": 1})) as emu:
        with pytest.raises(requests.ConnectionError):
            Api(emu.base_url).post("/api/events", single_event())
        # reads are never faulted at random
        assert Api(emu.base_url).get("/api/events").status_code == 200


def test_drop_after_commit_stores_then_drops_and_a_resend_is_deduped(fresh_emu, fresh_api):
    fresh_emu.fail_next(BULK, "drop_after_commit")
    with pytest.raises(requests.ConnectionError):
        fresh_api.post(BULK, _bulk("c"))
    assert [e["unique_id"] for e in fresh_emu.events()] == ["c"]
    assert Api(fresh_emu.base_url).post(BULK, _bulk("c")).status_code == 202
    assert [e["unique_id"] for e in fresh_emu.events()] == ["c"]
    assert [line["status"] for line in fresh_emu.journal()] == [None, 202]


def test_slow_answers_normally(fresh_emu, fresh_api):
    fresh_emu.fail_next("/api/events/", "slow", slow_seconds=0.05)
    assert fresh_api.post("/api/events", single_event()).status_code == 202
    assert len(fresh_emu.events()) == 1
    assert fresh_emu.journal()[-1]["fault"] == "slow"


def test_fail_next_applies_to_reads_too(fresh_emu, fresh_api):
    fresh_emu.fail_next("/api/events", 500, count=2)
    assert [fresh_api.get("/api/events").status_code for _ in range(3)] == [500, 500, 200]


def test_set_faults_changes_a_running_emulator(fresh_emu, fresh_api):
    fresh_emu.set_faults(FaultSpec(rate=1.0, mix={"500": 1}))
    assert fresh_api.post(BULK, _bulk("s")).status_code == 500
    fresh_emu.set_faults(None)
    assert fresh_api.post(BULK, _bulk("s")).status_code == 202


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": 1.5}, {"rate": -0.1}, {"mix": {}}, {"mix": {"teapot": 1}}, {"mix": {"200": 1}}, {"mix": {"500": -1}}],
)
def test_fault_specs_are_checked(kwargs):
    with pytest.raises(ValueError):
        FaultSpec(**kwargs)

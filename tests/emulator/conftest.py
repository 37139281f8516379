"""Emulators for the tests. ``emu`` is shared by a module's tests (starting and stopping one costs
~0.2 s), so tests on it use their own e-mails and metric names; ``fresh_emu`` is an empty account."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from kl_sync.emulator import EmulatorHandle, running_emulator
from tests.emulator.klaviyo_bodies import Api


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("klaviyo"), forbidden_keys=("pk_revoked",)) as handle:
        yield handle


@pytest.fixture
def fresh_emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path / "klaviyo") as handle:
        yield handle


@pytest.fixture
def api(emu: EmulatorHandle) -> Iterator[Api]:
    client = Api(emu.base_url, emu.api_key)
    yield client
    client.session.close()


@pytest.fixture
def fresh_api(fresh_emu: EmulatorHandle) -> Iterator[Api]:
    client = Api(fresh_emu.base_url, fresh_emu.api_key)
    yield client
    client.session.close()


@pytest.fixture
def email() -> str:
    """An address no other test uses."""
    return f"p-{uuid.uuid4().hex[:10]}@example.com"

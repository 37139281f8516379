"""Fixtures shared by the whole suite: real databases on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dbs import BACKENDS, fresh_database


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty store database on each backend."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def state_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty state database on each backend."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's .env or KL_SYNC_* variables, nor write under their .kl_sync/."""
    import os

    from kl_sync.settings import get_settings

    for name in list(os.environ):
        if name.startswith(("KL_SYNC_", "KLAVIYO_")) and not name.startswith("KL_SYNC_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


@pytest.fixture
def emulator(tmp_path: Path):
    """A fresh local Klaviyo emulator on a free loopback port (rate limits off)."""
    from kl_sync.emulator import running_emulator

    with running_emulator(tmp_path / "emulator", api_keys=("pk_test_key",), public_key="PUBLIC") as emu:
        yield emu


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's test harness (a temporary server), started once per session; never nest another."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield

"""The notebooks' settings (kl-sync's own), the one quick call that finds Klaviyo, the window, one-line stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from kl_sync.analysis.loaders import load_customers
from kl_sync.analysis.notebook import (
    DEMO_EMULATOR_URL,
    NotebookStop,
    _start_hint,
    connect_klaviyo,
    default_output_dir,
    notebook_settings,
    resolve_since,
    store_url_at,
)
from kl_sync.emulator import running_emulator
from kl_sync.settings import DEFAULT_STORE_URL, EMULATOR_KEY, EMULATOR_PORT
from tests.analysis.jupyter import free_port

SETTINGS = ("KLAVIYO_BASE_URL", "KLAVIYO_API_KEY", "KL_SYNC_STORE_URL", "KL_SYNC_STORE_TIMEZONE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No kl-sync settings in the environment; ``tmp_path`` stands for the repository's root."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    yield tmp_path


def test_nothing_set_means_the_demo_and_the_emulator_kl_sync_emulator_serves(clean_env):
    settings = notebook_settings(clean_env)

    assert settings.klaviyo_base_url == DEMO_EMULATOR_URL == f"http://127.0.0.1:{EMULATOR_PORT}"
    assert settings.klaviyo_api_key == EMULATOR_KEY
    assert settings.store_url == DEFAULT_STORE_URL
    assert settings.output_dir == ".kl_sync/demo/analysis"
    assert EMULATOR_KEY not in repr(settings)


def test_the_settings_kl_sync_reads_everywhere_win(clean_env, monkeypatch):
    monkeypatch.setenv("KLAVIYO_BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_somewhere")
    monkeypatch.setenv("KL_SYNC_STORE_URL", "postgresql://reader@db/shop")

    settings = notebook_settings(clean_env)

    assert (settings.klaviyo_base_url, settings.klaviyo_api_key) == ("http://127.0.0.1:9999", "pk_somewhere")
    assert settings.store_url == "postgresql://reader@db/shop" and settings.output_dir == ".kl_sync/analysis"


def test_a_key_with_the_default_url_is_the_real_klaviyo_and_the_repositorys_env_file_counts(clean_env):
    (clean_env / ".env").write_text("KLAVIYO_API_KEY=pk_live_from_dotenv\nKL_SYNC_STORE_URL=sqlite:///shop/store.db\n")

    settings = notebook_settings(clean_env)

    assert (settings.klaviyo_base_url, settings.klaviyo_api_key) == ("https://a.klaviyo.com", "pk_live_from_dotenv")
    assert settings.output_dir == "shop/analysis"


def test_a_bad_setting_is_one_line_naming_it(clean_env, monkeypatch):
    monkeypatch.setenv("KLAVIYO_BASE_URL", "not a url")

    with pytest.raises(NotebookStop, match=r"^settings: KLAVIYO_BASE_URL: not an http\(s\) URL"):
        notebook_settings(clean_env)


def test_a_url_without_a_key_stops_at_the_first_klaviyo_call(clean_env, monkeypatch):
    monkeypatch.setenv("KLAVIYO_BASE_URL", "http://127.0.0.1:9999")
    settings = notebook_settings(clean_env)

    with pytest.raises(NotebookStop) as stop:
        connect_klaviyo(settings.klaviyo_base_url, settings.klaviyo_api_key)

    assert str(stop.value).startswith("KLAVIYO_API_KEY: not set, and KLAVIYO_BASE_URL points at http://127.0.0.1:9999")


def test_nothing_answering_is_one_line_saying_what_to_start_after_one_attempt():
    port = free_port()  # bound and released: nothing listens there now

    with pytest.raises(NotebookStop) as stop:
        connect_klaviyo(f"http://127.0.0.1:{port}", EMULATOR_KEY)

    message = str(stop.value)
    assert message == (f"nothing answers at http://127.0.0.1:{port}: start the demo's Klaviyo emulator in a terminal: "
                       f"`.venv/bin/kl-sync emulator --port {port}` (after `make demo`)")
    assert stop.value._render_traceback_() == [message]  # what IPython shows instead of a traceback


def test_the_default_port_needs_no_port_flag():
    assert _start_hint(DEMO_EMULATOR_URL).endswith("`.venv/bin/kl-sync emulator` (after `make demo`)")


def test_a_refused_key_is_one_line_and_a_good_one_gets_a_client(tmp_path):
    with running_emulator(tmp_path / "emulator", api_keys=("pk_right",)) as emulator:
        with pytest.raises(NotebookStop, match=r"^Klaviyo at http://127\.0\.0\.1:\d+ refused the API key \(401\): set KLAVIYO_API_KEY"):
            connect_klaviyo(emulator.base_url, "pk_wrong")

        client = connect_klaviyo(emulator.base_url, "pk_right")

    assert client.base_url == emulator.base_url and client.retries.attempts > 1


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (None, None),
        ("90 days", pd.Timestamp("2026-03-02T12:00Z")),
        ("90d", pd.Timestamp("2026-03-02T12:00Z")),
        (90, pd.Timestamp("2026-03-02T12:00Z")),
        ("1 day", pd.Timestamp("2026-05-30T12:00Z")),
        ("2026-01-01", pd.Timestamp("2026-01-01T00:00Z")),
        ("2026-01-01T05:00-05:00", pd.Timestamp("2026-01-01T10:00Z")),
    ],
)
def test_since_is_days_before_as_of_a_date_or_the_whole_history(since, expected):
    assert resolve_since(since, pd.Timestamp("2026-05-31T12:00Z")) == expected


def test_a_since_that_is_neither_is_one_line():
    with pytest.raises(NotebookStop, match="since: 'last quarter' is neither a number of days"):
        resolve_since("last quarter", pd.Timestamp("2026-05-31T12:00Z"))


def test_a_missing_sqlite_store_is_one_line_and_no_empty_store_appears(tmp_path):
    with pytest.raises(NotebookStop, match=r"^no store at .*/\.kl_sync/demo/store\.db: run `make demo` first"):
        load_customers(DEFAULT_STORE_URL, tmp_path)

    assert not (tmp_path / ".kl_sync").exists()
    assert store_url_at("postgresql://reader@db/shop", tmp_path) == "postgresql://reader@db/shop"


def test_the_output_folder_is_the_stores_analysis_folder():
    assert default_output_dir("sqlite:///.kl_sync/demo/store.db") == ".kl_sync/demo/analysis"
    assert default_output_dir("sqlite:////srv/shop/store.db") == "/srv/shop/analysis"
    assert default_output_dir("mysql://reader@db/shop") == ".kl_sync/analysis"

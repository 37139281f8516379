import pytest

from kl_sync.app.cli import main
from kl_sync.settings import DEFAULT_LOG_METRICS, SettingsError, load_settings


def test_defaults_need_nothing_configured():
    settings = load_settings()
    assert settings.state_url.startswith("sqlite:///.kl_sync/")
    assert settings.klaviyo_base_url == "https://a.klaviyo.com"
    assert settings.klaviyo_revision == "2026-07-15"
    assert settings.store_timezone == "UTC"
    assert settings.log_metrics == DEFAULT_LOG_METRICS
    assert settings.api_key() is None


def test_environment_and_dotenv_are_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("KL_SYNC_STORE_TIMEZONE=America/New_York\nKLAVIYO_API_KEY=pk_from_dotenv\n")
    monkeypatch.setenv("KL_SYNC_STORE_URL", "postgresql://reader@db/shop")
    settings = load_settings()
    assert settings.store_url == "postgresql://reader@db/shop"
    assert settings.tz.key == "America/New_York"
    assert settings.api_key() == "pk_from_dotenv"


def test_log_metrics_mapping_is_a_setting(monkeypatch):
    monkeypatch.setenv("KL_SYNC_LOG_METRICS", '{"started.signup": "Started Signup (server)"}')
    assert load_settings().log_metrics == {"started.signup": "Started Signup (server)"}


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("KL_SYNC_STORE_URL", "not a url", "KL_SYNC_STORE_URL"),
        ("KL_SYNC_STATE_URL", "oracle://x/y", "KL_SYNC_STATE_URL"),
        ("KL_SYNC_STORE_TIMEZONE", "Mars/Olympus_Mons", "KL_SYNC_STORE_TIMEZONE"),
        ("KLAVIYO_REVISION", "latest", "KLAVIYO_REVISION"),
        ("KLAVIYO_REVISION", "2026-13-45", "KLAVIYO_REVISION"),
        ("KLAVIYO_BASE_URL", "a.klaviyo.com", "KLAVIYO_BASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(f"{says}: ")
    assert "\n" not in str(err.value)


def test_bad_setting_fails_the_cli_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("KL_SYNC_STORE_TIMEZONE", "Nowhere/Land")
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kl-sync: configuration error: KL_SYNC_STORE_TIMEZONE: unknown time zone 'Nowhere/Land'"]


def test_api_key_is_never_shown(monkeypatch):
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_canary_0123456789")
    settings = load_settings()
    for text in (repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert "pk_canary_0123456789" not in text
    assert settings.api_key() == "pk_canary_0123456789"


def test_retry_policy_names_both_levels():
    retry = load_settings().retry
    assert (retry.request.attempts, retry.request.first_wait, retry.request.longest_wait) == (6, 0.5, 30.0)
    assert (retry.outbox.attempts, retry.outbox.first_wait, retry.outbox.longest_wait) == (8, 30.0, 3600.0)
    # The sender's outbox schedule: 30 s, 1 min, 2 min … capped at 1 h.
    assert [retry.outbox.wait(n) for n in (1, 2, 3, 8, 9)] == [30.0, 60.0, 120.0, 3600.0, 3600.0]


@pytest.mark.parametrize("variable", ["KL_SYNC_MAX_SENDS", "KL_SYNC_MAX_ATTEMPTS"])
def test_outbox_sends_are_set_by_either_name(monkeypatch, variable):
    monkeypatch.setenv(variable, "3")
    assert load_settings().retry.outbox.attempts == 3
    monkeypatch.setenv(variable, "0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(f"{variable}: ")


def test_the_default_state_follows_the_default_store(monkeypatch):
    from kl_sync.settings import DEFAULT_STATE_URL, DEMO_STATE_URL, load_settings

    # Nothing configured: the demo's store and the demo's state (what `make demo` wrote, `status` reads).
    assert load_settings().state_url == DEMO_STATE_URL == "sqlite:///.kl_sync/demo/state.db"
    # Another store: never the demo's state.
    monkeypatch.setenv("KL_SYNC_STORE_URL", "sqlite:///shop.db")
    assert load_settings().state_url == DEFAULT_STATE_URL == "sqlite:///.kl_sync/state.db"
    monkeypatch.delenv("KL_SYNC_STORE_URL")
    monkeypatch.setenv("KL_SYNC_STATE_URL", "sqlite:///mine.db")
    assert load_settings().state_url == "sqlite:///mine.db"

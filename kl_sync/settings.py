"""The one settings object: read from ``KL_SYNC_*`` / ``KLAVIYO_*`` variables and an optional ``.env``.

Validated when it is built, so a bad value fails at start-up with one line naming the variable
(:class:`SettingsError`), not later deep inside a sync.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kl_sync.constants import KLAVIYO_BASE_URL, KLAVIYO_REVISION
from kl_sync.failures import EXIT_FIX_SETTING, Failure, one_line_reason
from kl_sync.retry import OUTBOX_RETRIES, REQUEST_RETRIES, RetryPolicy

#: Where kl-sync keeps its own files when nothing says otherwise (relative to the working directory).
HOME_DIR = Path(".kl_sync")
DEMO_DIR = HOME_DIR / "demo"

DEFAULT_STATE_URL = f"sqlite:///{HOME_DIR / 'state.db'}"
DEFAULT_STORE_URL = f"sqlite:///{DEMO_DIR / 'store.db'}"
#: The demo store's state: with nothing configured, the store, the state and the Klaviyo account are
#: all the demo's (``make demo`` writes them, every command then reads them), and a real store's state
#: is never mixed with the demo's.
DEMO_STATE_URL = f"sqlite:///{DEMO_DIR / 'state.db'}"

#: The seed's log types, each sent as a Klaviyo metric of the same name.
DEFAULT_LOG_METRICS: dict[str, str] = {
    "cancelled": "cancelled",
    "contact.form": "contact.form",
    "failed.payment": "failed.payment",
    "referral.credit": "referral.credit",
    "shipping.email": "shipping.email",
    "started.signup": "started.signup",
}

#: The keys of the local Klaviyo emulator when kl-sync starts it itself (the embedded default, the
#: demo, the notebooks' defaults). Not secrets: the emulator is a local test double.
EMULATOR_KEY = "pk_local_emulator"
EMULATOR_PUBLIC_KEY = "LOCAL1"
EMULATOR_PORT = 8765

_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$")


class SettingsError(Failure, ValueError):
    """A setting is missing or malformed; the message names the variable (exit code 2)."""

    exit_code = EXIT_FIX_SETTING

    @property
    def line(self) -> str:
        return f"configuration error: {self}"


@contextmanager
def reaching(setting: str) -> Iterator[None]:
    """A database error inside is a :class:`SettingsError` naming the setting that points at that
    database (``KL_SYNC_STATE_URL``, ``KL_SYNC_STORE_URL``, ``--url``) with the driver's reason."""
    try:
        yield
    except Exception as exc:
        import sys

        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is None or not isinstance(exc, sa_exc.DBAPIError):
            raise
        raise SettingsError(f"{setting}: cannot connect: {one_line_reason(exc)}") from None


def _env_names(field: str, alias: str) -> AliasChoices:
    return AliasChoices(alias, field)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    store_url: str = Field(DEFAULT_STORE_URL, validation_alias=_env_names("store_url", "KL_SYNC_STORE_URL"))
    state_url: str = Field(DEFAULT_STATE_URL, validation_alias=_env_names("state_url", "KL_SYNC_STATE_URL"))
    klaviyo_api_key: SecretStr | None = Field(
        None, validation_alias=_env_names("klaviyo_api_key", "KLAVIYO_API_KEY")
    )
    klaviyo_base_url: str = Field(
        KLAVIYO_BASE_URL, validation_alias=_env_names("klaviyo_base_url", "KLAVIYO_BASE_URL")
    )
    klaviyo_revision: str = Field(
        KLAVIYO_REVISION, validation_alias=_env_names("klaviyo_revision", "KLAVIYO_REVISION")
    )
    store_timezone: str = Field("UTC", validation_alias=_env_names("store_timezone", "KL_SYNC_STORE_TIMEZONE"))
    #: Log type -> Klaviyo metric name; its keys are the tracked types.
    log_metrics: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_LOG_METRICS),
        validation_alias=_env_names("log_metrics", "KL_SYNC_LOG_METRICS"),
    )
    #: Events older than this (at parse time) are sent with ``backfill: true`` so they fire no flows.
    backfill_after: dt.timedelta = Field(
        dt.timedelta(days=1), validation_alias=_env_names("backfill_after", "KL_SYNC_BACKFILL_AFTER")
    )
    #: How far before its cursor the orders step re-reads, for late commits and same-second updates.
    orders_lookback: dt.timedelta = Field(
        dt.timedelta(minutes=5), validation_alias=_env_names("orders_lookback", "KL_SYNC_ORDERS_LOOKBACK")
    )
    #: How many log ids before its cursor the parse step re-reads: a row committed late, with an id below
    #: rows already read (ids are handed out at insert, rows become visible at commit), is not missed.
    log_lookback_ids: int = Field(
        1000, ge=0, validation_alias=_env_names("log_lookback_ids", "KL_SYNC_LOG_LOOKBACK_IDS")
    )
    #: How far before its cursor the customers step re-reads (same-second updates, late commits).
    customers_lookback: dt.timedelta = Field(
        dt.timedelta(minutes=5), validation_alias=_env_names("customers_lookback", "KL_SYNC_CUSTOMERS_LOOKBACK")
    )
    value_currency: str = Field("USD", validation_alias=_env_names("value_currency", "KL_SYNC_VALUE_CURRENCY"))
    #: Rows read from the store per chunk (each chunk one transaction); a send batch is send_batch_size.
    chunk_size: int = Field(5000, ge=1, validation_alias=_env_names("chunk_size", "KL_SYNC_CHUNK_SIZE"))
    # 20,000: GX costs ~0.25 s a call whatever the batch size (benchmarks/README.md, benchmark 6).
    send_batch_size: int = Field(
        20_000, ge=1, validation_alias=_env_names("send_batch_size", "KL_SYNC_SEND_BATCH_SIZE")
    )
    #: Requests of one endpoint the sender keeps in flight at once (for endpoints whose requests may
    #: arrive in any order): with a 250 ms round trip one at a time allows 4 a second, under Klaviyo's
    #: burst of 10 (benchmarks/README.md). The rate limiter still spaces them.
    send_in_flight: int = Field(
        4, ge=1, le=32, validation_alias=_env_names("send_in_flight", "KL_SYNC_SEND_IN_FLIGHT")
    )
    #: The store-reading steps run in a process of their own beside the sender (two interpreter
    #: locks on two cores: benchmarks/README.md, benchmark 8); false: in the run's own process.
    #: In-memory SQLite databases always stay in the run's process.
    store_process: bool = Field(True, validation_alias=_env_names("store_process", "KL_SYNC_STORE_PROCESS"))
    #: Sends of one outbox row before it becomes a dead letter (the outbox half of :attr:`retry`).
    #: ``KL_SYNC_MAX_ATTEMPTS`` is its older name.
    max_sends: int = Field(
        OUTBOX_RETRIES.attempts, ge=1,
        validation_alias=AliasChoices("KL_SYNC_MAX_SENDS", "KL_SYNC_MAX_ATTEMPTS", "max_sends"),
    )
    #: How long claimed outbox rows stay a worker's without its heartbeat renewing them (every quarter
    #: of it): a killed run's rows are free again within this, and its run is recorded abandoned.
    lease_seconds: int = Field(60, ge=5, validation_alias=_env_names("lease_seconds", "KL_SYNC_LEASE_SECONDS"))
    #: How long after its send a row is first looked for in Klaviyo (Klaviyo processes events after
    #: answering 202; reading back sooner finds fewer).
    verify_after: dt.timedelta = Field(
        dt.timedelta(minutes=10), validation_alias=_env_names("verify_after", "KL_SYNC_VERIFY_AFTER")
    )
    #: How long after its send a row Klaviyo still does not show is sent again (at a verification;
    #: a grace shorter than ``verify_after`` re-sends at the first check that misses it).
    verify_grace: dt.timedelta = Field(
        dt.timedelta(minutes=30), validation_alias=_env_names("verify_grace", "KL_SYNC_VERIFY_GRACE")
    )
    #: Sends Klaviyo accepted before a row that never appears becomes a dead letter.
    verify_max_sends: int = Field(
        3, ge=1, validation_alias=_env_names("verify_max_sends", "KL_SYNC_VERIFY_MAX_SENDS")
    )
    #: The shop's public site, for product and checkout links in payloads.
    site_url: str = Field("https://shop.example.com", validation_alias=_env_names("site_url", "KL_SYNC_SITE_URL"))

    @field_validator("store_url", "state_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a SQLAlchemy database URL: {value!r}") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql", "mysql", "mariadb"}:
            raise ValueError(f"unsupported database {url.get_backend_name()!r} (sqlite, postgresql, mysql)")
        return value

    @model_validator(mode="after")
    def _demo_state_with_the_demo_store(self) -> Settings:
        # The default state follows the store: the demo's beside the demo store, else .kl_sync/state.db.
        if "state_url" not in self.model_fields_set and self.store_url == DEFAULT_STORE_URL:
            self.state_url = DEMO_STATE_URL
        return self

    @field_validator("verify_after", "verify_grace")
    @classmethod
    def _check_duration(cls, value: dt.timedelta) -> dt.timedelta:
        if value < dt.timedelta(0):
            raise ValueError("must not be negative (an ISO 8601 duration such as PT10M)")
        return value

    @field_validator("klaviyo_base_url", "site_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @field_validator("klaviyo_revision")
    @classmethod
    def _check_revision(cls, value: str) -> str:
        if not _REVISION.match(value):
            raise ValueError(f"not a revision date YYYY-MM-DD: {value!r}")
        dt.date.fromisoformat(value[:10])
        return value

    @field_validator("store_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.store_timezone)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy: attempts of one HTTP request (the client) and sends of one outbox row
        (the sender), each with its backoff."""
        return RetryPolicy(request=REQUEST_RETRIES, outbox=replace(OUTBOX_RETRIES, attempts=self.max_sends))

    def api_key(self) -> str | None:
        """The Klaviyo private key in clear, for the client only."""
        return self.klaviyo_api_key.get_secret_value() if self.klaviyo_api_key else None


def _variables_by_name() -> dict[str, list[str]]:
    """Every name a field is known by (its own, each of its variables) -> its variables, main first."""
    found: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        if isinstance(field.validation_alias, AliasChoices):
            variables = [str(c) for c in field.validation_alias.choices if c != name]
            found.update(dict.fromkeys((name, *variables), variables))
    return found


_ENV_NAMES = _variables_by_name()


def _env_name(field: str) -> str:
    """The variable a field was read from: the one set in the environment, else its main name."""
    names = _ENV_NAMES.get(field) or [field]
    return next((name for name in names if name in os.environ), names[0])


#: pydantic-settings' own error for a value it cannot even decode (JSON of a dict field), which names
#: the field and the source but not the variable.
_UNDECODABLE = re.compile(r'error parsing value for field "(?P<field>[^"]+)" from source "(?P<source>[^"]+)"')


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings; raise :class:`SettingsError` naming the first bad variable."""
    from pydantic_settings import SettingsError as UndecodableSetting

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = _env_name(field)
        message = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
    except UndecodableSetting as exc:
        found = _UNDECODABLE.search(str(exc))
        if found is None:
            raise
        where = " (in .env)" if found["source"].startswith("DotEnv") else ""
        reason = " ".join(str(exc.__cause__ or "").split())
        raise SettingsError(f"{_env_name(found['field'])}{where}: not valid JSON ({reason})") from None


def prefect_defaults() -> None:
    """Before Prefect is imported: without a Prefect server configured, flows run on a temporary
    local one; keep its files under .kl_sync/ rather than the user's home, and its telemetry off
    (its heartbeat is what printed "database is locked" noise here)."""
    if not os.environ.get("PREFECT_API_URL"):
        if "PREFECT_HOME" not in os.environ:
            home = (HOME_DIR / "prefect").resolve()
            # Prefect makes its home without parents: in a folder with no .kl_sync/ yet (a state
            # database elsewhere), its temporary server could not open its database.
            home.mkdir(parents=True, exist_ok=True)
            os.environ["PREFECT_HOME"] = str(home)
        # A fresh home migrates its database first (~11 s here, more on a busy 2-core machine);
        # Prefect's default 20 s wait is too short for that.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The library logs with the standard logging module (it never imports Prefect); this routes the
    # `kl_sync` loggers (e.g. the client's retry lines) into the flow run's logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "kl_sync")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return load_settings()

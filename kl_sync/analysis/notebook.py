"""What the notebooks share: their settings, the connection to Klaviyo, the time window, one-line stops.

The notebooks read the settings every other part of kl-sync reads (:mod:`kl_sync.settings`:
``KL_SYNC_STORE_URL``, ``KLAVIYO_BASE_URL``, ``KLAVIYO_API_KEY``, from the environment or the
repository's ``.env``). With no Klaviyo key and the default base URL they read the demo: its store,
and its account as ``kl-sync emulator`` serves it (on loopback at the emulator's default port, with
the emulator's key). A key with the default URL always means the real Klaviyo.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
from sqlalchemy.engine import make_url

from kl_sync.constants import KLAVIYO_BASE_URL
from kl_sync.klaviyo.client import KlaviyoClient, RequestRecord
from kl_sync.klaviyo.errors import AuthError, KlaviyoError
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.retry import REQUEST_RETRIES
from kl_sync.settings import DEFAULT_LOG_METRICS, EMULATOR_KEY, EMULATOR_PORT, HOME_DIR, SettingsError, load_settings

#: The probe: one profile (a key that reads nothing else still passes; the loaders then say what lacks).
GET_PROFILES = ENDPOINT_LIMITS["get_profiles"]
#: The demo's account as ``kl-sync emulator`` serves it when started with its defaults.
DEMO_EMULATOR_URL = f"http://127.0.0.1:{EMULATOR_PORT}"
DEFAULT_SINCE = "90 days"
#: The one probe before a notebook reads anything: connect quickly, and do not retry.
PROBE_TIMEOUT = (3.0, 15.0)


def find_repo_root(start: Path | None = None) -> Path:
    """The kl-sync checkout containing ``start`` (default: the working directory).

    Jupyter starts a notebook's kernel in ``notebooks/``; the demo's paths are relative to the root.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "kl_sync").is_dir():
            return folder
    return here


def resolve_store_url(url: str, root: Path) -> str:
    """A relative SQLite file URL made absolute against ``root``; any other URL unchanged."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    path = Path(parsed.database)
    if path.is_absolute():
        return url
    return parsed.set(database=str(root / path)).render_as_string(hide_password=False)


class NotebookStop(Exception):
    """A failure a person must fix, shown as its one line in a notebook (no traceback)."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows what this returns instead of the traceback (InteractiveShell.showtraceback).
        return [str(self)]


@dataclass(frozen=True)
class NotebookSettings:
    store_url: str
    klaviyo_base_url: str
    #: None when no key is set and the base URL is not the default (connect_klaviyo says so).
    klaviyo_api_key: str | None
    #: Where the notebooks write their CSVs (relative to the repository's root).
    output_dir: str
    store_timezone: str = "UTC"
    #: Tracked log type -> Klaviyo metric (``KL_SYNC_LOG_METRICS``): which server metrics the analyses read.
    log_metrics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LOG_METRICS))

    def __repr__(self) -> str:
        key = "None" if self.klaviyo_api_key is None else "'<hidden>'"
        return (f"NotebookSettings(store_url={self.store_url!r}, klaviyo_base_url={self.klaviyo_base_url!r}, "
                f"klaviyo_api_key={key}, output_dir={self.output_dir!r})")


def default_output_dir(store_url: str) -> str:
    """The store's analysis folder: ``analysis/`` beside a SQLite store file (the demo's is
    ``.kl_sync/demo/analysis``), else ``.kl_sync/analysis``."""
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).parent / "analysis")
    return str(HOME_DIR / "analysis")


def notebook_settings(root: Path | None = None) -> NotebookSettings:
    """The notebooks' defaults from kl-sync's settings (the environment, then ``<root>/.env``)."""
    root = root or find_repo_root()
    try:
        settings = load_settings(_env_file=root / ".env")
    except SettingsError as exc:
        raise NotebookStop(f"settings: {exc}") from None
    key = settings.api_key()
    base_url = settings.klaviyo_base_url
    if key is None and base_url == KLAVIYO_BASE_URL:
        base_url, key = DEMO_EMULATOR_URL, EMULATOR_KEY
    return NotebookSettings(
        store_url=settings.store_url,
        klaviyo_base_url=base_url,
        klaviyo_api_key=key,
        output_dir=default_output_dir(settings.store_url),
        store_timezone=settings.store_timezone,
        log_metrics=dict(settings.log_metrics),
    )


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _start_hint(base_url: str) -> str:
    port = urlsplit(base_url).port
    flag = "" if port == EMULATOR_PORT else f" --port {port}"
    return f"start the demo's Klaviyo emulator in a terminal: `.venv/bin/kl-sync emulator{flag}` (after `make demo`)"


def connect_klaviyo(base_url: str, api_key: str | None) -> KlaviyoClient:
    """A client for ``base_url``, once one quick call shows that Klaviyo (or the emulator) answers
    and takes the key. Otherwise :class:`NotebookStop` says in one line what to start or set."""
    if not api_key:
        raise NotebookStop(
            f"KLAVIYO_API_KEY: not set, and KLAVIYO_BASE_URL points at {base_url} "
            f"(an emulator from `kl-sync emulator` takes {EMULATOR_KEY})"
        )
    answered: list[RequestRecord] = []
    # One attempt: the probe asks whether anything answers, it does not wait for it to.
    once = replace(REQUEST_RETRIES, attempts=1)
    probe = KlaviyoClient(api_key, base_url, timeout=PROBE_TIMEOUT, retries=once, on_request=answered.append)
    try:
        probe.get(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id, params={"page[size]": 1})
    except AuthError as exc:
        raise NotebookStop(
            f"Klaviyo at {base_url} refused the API key ({exc.status}): set KLAVIYO_API_KEY to a private key "
            "with events:read, metrics:read and profiles:read (and lists:read, lists:write, profiles:write to push)"
        ) from None
    except KlaviyoError as exc:
        if answered and answered[-1].status is None:
            if _is_loopback(base_url):
                raise NotebookStop(f"nothing answers at {base_url}: {_start_hint(base_url)}") from None
            raise NotebookStop(f"cannot reach Klaviyo at {base_url}: {exc.message}") from None
        raise NotebookStop(f"Klaviyo at {base_url}: {exc.message}") from None
    finally:
        probe.close()
    return KlaviyoClient(api_key, base_url)


_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:d|days?)\s*$", re.IGNORECASE)


def as_of_time(as_of: str | dt.datetime | pd.Timestamp | None) -> pd.Timestamp:
    """``as_of`` as an aware UTC timestamp (now when None; a naive value is read as UTC)."""
    stamp = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def resolve_since(since: str | int | float | dt.datetime | pd.Timestamp | None, as_of: pd.Timestamp) -> pd.Timestamp | None:
    """The window's start: None (the full history), a number of days before ``as_of`` (``90``,
    ``"90 days"``), or a date or time (``"2026-01-01"``; naive means UTC)."""
    if since is None:
        return None
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return as_of - pd.Timedelta(days=float(since))
    if isinstance(since, str):
        days = _DAYS.match(since)
        if days:
            return as_of - pd.Timedelta(days=float(days.group(1)))
        try:
            return as_of_time(since)
        except ValueError:
            raise NotebookStop(f"since: {since!r} is neither a number of days ('90 days') nor a date ('2026-01-01')") from None
    return as_of_time(since)


def describe_window(since: pd.Timestamp | None) -> str:
    """How a sentence names the window: "since 2026-09-02" or "in the whole history"."""
    return "in the whole history" if since is None else f"since {since:%Y-%m-%d}"


def store_url_at(store_url: str, root: Path | None = None) -> str:
    """``store_url`` with a relative SQLite path made absolute against the repository's root, after
    checking that such a file exists (SQLite would otherwise create an empty store)."""
    root = root or find_repo_root()
    resolved = resolve_store_url(store_url, root)
    url = make_url(resolved)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and not Path(url.database).is_file():
        raise NotebookStop(f"no store at {url.database}: run `make demo` first, or set KL_SYNC_STORE_URL")
    return resolved

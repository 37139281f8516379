"""DataFrames for the notebooks: events read back from Klaviyo (or the emulator), customers from the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import make_url

from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.reads import EVENT_COLUMNS, events_frame
from kl_sync.store.contract import customers
from kl_sync.store.readers import store_engine

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


def load_events(
    client: KlaviyoClient,
    metrics: Sequence[str] | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> pd.DataFrame:
    """Events of ``metrics`` (all metrics when None) in ``[since, until)``, one frame, times in UTC."""
    frames = (
        [events_frame(client, since=since, until=until)]
        if metrics is None
        else [events_frame(client, metric_name=metric, since=since, until=until) for metric in metrics]
    )
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in EVENT_COLUMNS}).astype(
            {"datetime": "datetime64[ns, UTC]"}
        )
    events = pd.concat(frames, ignore_index=True).drop_duplicates("id")
    events["datetime"] = pd.to_datetime(events["datetime"], utc=True)
    return events.sort_values(["datetime", "id"], kind="mergesort").reset_index(drop=True)


def load_customers(store_url: str) -> pd.DataFrame:
    """The store's ``customers`` table (naive store-local timestamps, as the store keeps them)."""
    engine = store_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(customers).order_by(customers.c.id)).mappings().all()
    finally:
        engine.dispose()
    frame = pd.DataFrame([dict(row) for row in rows], columns=[column.name for column in customers.columns])
    for column in ("signup_date", "created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame

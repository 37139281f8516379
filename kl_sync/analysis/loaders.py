"""DataFrames for the notebooks: events and profiles read back from Klaviyo (or the emulator),
customers from the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from kl_sync.analysis.notebook import find_repo_root, resolve_store_url, store_url_at
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.reads import EVENT_COLUMNS, GET_PROFILES, events_frame, quote
from kl_sync.store.contract import customers
from kl_sync.store.readers import store_engine

__all__ = ["find_repo_root", "load_customers", "load_events", "load_profiles", "resolve_store_url"]

#: The profile properties kl-sync keeps in step with the store (the seed's Status, Schedule and Box).
STORE_PROPERTIES = ("Status", "Schedule", "Box")
KLAVIYO_PROFILE_COLUMNS = [
    "profile_id",
    "email",
    "external_id",
    "first_name",
    "last_name",
    "last_event_date",
    *STORE_PROPERTIES,
    "has_store_properties",
    "can_receive_email_marketing",
    "consent",
    "suppressed",
    "suppression_reasons",
]


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


def load_customers(store_url: str, root: Path | None = None) -> pd.DataFrame:
    """The store's ``customers`` table (naive store-local timestamps, as the store keeps them).

    A relative SQLite path is relative to the repository's root; a missing SQLite file is a
    one-line :class:`~kl_sync.analysis.notebook.NotebookStop`, not a new empty store.
    """
    engine = store_engine(store_url_at(store_url, root))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(customers).order_by(customers.c.id)).mappings().all()
    finally:
        engine.dispose()
    frame = pd.DataFrame([dict(row) for row in rows], columns=[column.name for column in customers.columns])
    for column in ("signup_date", "created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def _profile_pages(client: KlaviyoClient, emails: Iterable[str] | None) -> Iterator[dict[str, Any]]:
    """Profile resources with their ``subscriptions`` (all profiles, or those of ``emails``, 100 a request)."""
    page_size = GET_PROFILES.max_items or 100
    base = {"page[size]": page_size, "additional-fields[profile]": "subscriptions"}
    if emails is None:
        chunks: list[dict[str, Any]] = [base]
    else:
        pending = list(dict.fromkeys(email for email in emails if isinstance(email, str) and email))
        chunks = [
            {**base, "filter": f"any(email,[{','.join(quote(e) for e in pending[start:start + page_size])}])"}
            for start in range(0, len(pending), page_size)
        ]
    for params in chunks:
        for page in client.paginate(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id, params=params):
            yield from page.get("data") or []


def _profile_row(resource: dict[str, Any]) -> dict[str, Any]:
    attributes = resource.get("attributes") or {}
    properties = attributes.get("properties") or {}
    marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get("marketing") or {}
    suppression = marketing.get("suppression") or []
    can_receive = marketing.get("can_receive_email_marketing")
    email = attributes.get("email")
    return {
        "profile_id": resource.get("id"),
        "email": email.strip().lower() if isinstance(email, str) else None,
        "external_id": attributes.get("external_id"),
        "first_name": attributes.get("first_name"),
        "last_name": attributes.get("last_name"),
        "last_event_date": attributes.get("last_event_date"),
        **{name: properties.get(name) for name in STORE_PROPERTIES},
        "has_store_properties": any(name in properties for name in STORE_PROPERTIES),
        "can_receive_email_marketing": can_receive,
        "consent": marketing.get("consent"),
        # Klaviyo: can_receive_email_marketing is false when the profile has a global suppression.
        "suppressed": bool(suppression) or can_receive is False,
        "suppression_reasons": ", ".join(sorted({str(item.get("reason")) for item in suppression})),
    }


def load_profiles(client: KlaviyoClient, emails: Iterable[str] | None = None) -> pd.DataFrame:
    """Klaviyo's profiles (all, or those of ``emails``) with e-mail consent: one row each,
    :data:`KLAVIYO_PROFILE_COLUMNS`; e-mails folded; ``last_event_date`` in UTC.

    ``suppressed`` reads the profile's ``subscriptions`` (``additional-fields[profile]``): a global
    e-mail suppression (``USER_SUPPRESSED``, ``UNSUBSCRIBE``, ``HARD_BOUNCE``, ...) or
    ``can_receive_email_marketing`` false means Klaviyo will not e-mail the profile.
    """
    frame = pd.DataFrame([_profile_row(resource) for resource in _profile_pages(client, emails)], columns=KLAVIYO_PROFILE_COLUMNS)
    frame["last_event_date"] = pd.to_datetime(frame["last_event_date"], utc=True, format="ISO8601")
    return frame.drop_duplicates("profile_id").reset_index(drop=True)

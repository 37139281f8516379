"""Reading back from Klaviyo: events, profiles, metrics, as flat dicts (and DataFrames for notebooks).

Every reader follows ``links.next`` cursor pages until there is none. Klaviyo returns an event's value
and unique id inside ``event_properties`` as ``$value`` and ``$event_id``; the flat event lifts them out
(``value``, ``unique_id``) and leaves the store's own properties in ``properties``. For an event
sent without a unique_id, Klaviyo's ``$event_id`` (and so ``unique_id`` here) is its time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kl_sync.chunks import chunks
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS

if TYPE_CHECKING:
    import pandas

GET_EVENTS = ENDPOINT_LIMITS["get_events"]
GET_PROFILES = ENDPOINT_LIMITS["get_profiles"]
GET_METRICS = ENDPOINT_LIMITS["get_metrics"]

#: Keys Klaviyo stores inside ``event_properties`` for the event's own attributes.
VALUE_KEY = "$value"
UNIQUE_ID_KEY = "$event_id"

EVENT_COLUMNS = ("id", "metric", "metric_id", "profile_id", "email", "datetime", "unique_id", "value", "properties")
PROFILE_COLUMNS = ("id", "email", "first_name", "last_name", "created", "updated", "properties")


def quote(value: str) -> str:
    """A string argument of Klaviyo's filter syntax (double-quoted, JSON escapes)."""
    return json.dumps(value, ensure_ascii=False)


def filter_datetime(value: dt.datetime | str) -> str:
    """A datetime argument of Klaviyo's filter syntax: ISO 8601 with an offset, unquoted."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no UTC offset; Klaviyo would guess one")
    return value.isoformat()


def combine_filters(filters: Iterable[str]) -> str | None:
    """One ``filter`` parameter from several conditions (``and(...)`` when more than one)."""
    parts = [part for part in filters if part]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"and({','.join(parts)})"


def iter_metrics(client: KlaviyoClient) -> Iterator[dict[str, Any]]:
    """Every metric: ``{id, name, created, updated, integration}``."""
    for page in client.paginate(GET_METRICS.path, endpoint=GET_METRICS.operation_id):
        for resource in page.get("data") or []:
            attributes = resource.get("attributes") or {}
            yield {
                "id": resource["id"],
                "name": attributes.get("name"),
                "created": attributes.get("created"),
                "updated": attributes.get("updated"),
                "integration": attributes.get("integration"),
            }


def check_key(client: KlaviyoClient) -> None:
    """One cheap authenticated read, so a wrong key fails a run in about a second, before the store is
    read: ``GET /api/profiles`` for one profile's id (scope ``profiles:read``, which the verify and
    consent steps need anyway; 75/s). Raises :class:`~kl_sync.klaviyo.errors.AuthError` for a
    refused key, :class:`~kl_sync.klaviyo.errors.RetryableError` when Klaviyo cannot be reached."""
    client.get(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id,
               params={"page[size]": 1, "fields[profile]": "email"})


def metric_ids(client: KlaviyoClient, name: str) -> list[str]:
    """Ids of the metrics called ``name`` (several integrations may each have one)."""
    return metric_ids_by_name(client).get(name, [])


def metric_ids_by_name(client: KlaviyoClient) -> dict[str, list[str]]:
    """Every metric's id under its name, in one pass over ``GET /api/metrics``."""
    found: dict[str, list[str]] = {}
    for metric in iter_metrics(client):
        found.setdefault(metric["name"], []).append(metric["id"])
    return found


def iter_events(
    client: KlaviyoClient, *, metric_name: str | None = None, metric_id: str | None = None, **filters: Any
) -> Iterator[dict[str, Any]]:
    """Events, oldest first, flattened (:data:`EVENT_COLUMNS`); ``filters`` are those of
    :func:`iter_event_pages` (``profile_id``, ``since`` inclusive, ``until`` exclusive, ``page_size``,
    ``include``, ``fields``); a column whose resource was left out reads None.

    ``metric_name`` is resolved to metric ids first (get_events filters by id only); an unknown name
    yields nothing, and a name several integrations share yields each metric's events in turn.
    """
    if metric_name is not None and metric_id is not None:
        raise ValueError("give metric_name or metric_id, not both")
    ids: list[str | None] = [metric_id]
    if metric_name is not None:
        ids = list(metric_ids(client, metric_name))
    for one_metric in ids:
        for page in iter_event_pages(client, metric_id=one_metric, **filters):
            included = _included(page)
            for resource in page.get("data") or []:
                yield flatten_event(resource, included)


def iter_event_pages(
    client: KlaviyoClient,
    *,
    metric_id: str | None = None,
    profile_id: str | None = None,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    page_size: int = GET_EVENTS.max_items or 1000,
    include: str = "metric,profile",
    fields: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The page documents of ``GET /api/events`` for these filters, oldest first (:func:`iter_events`
    flattens them; a reader that needs two fields of each event reads the pages itself). ``include``
    and ``fields`` (sparse fieldsets: ``{"event": "datetime,event_properties"}``) ask for less when
    less will do."""
    conditions = [
        f"equals(metric_id,{quote(metric_id)})" if metric_id else "",
        f"equals(profile_id,{quote(profile_id)})" if profile_id else "",
        f"greater-or-equal(datetime,{filter_datetime(since)})" if since is not None else "",
        f"less-than(datetime,{filter_datetime(until)})" if until is not None else "",
    ]
    params: dict[str, Any] = {"include": include, "sort": "datetime", "page[size]": page_size}
    params.update({f"fields[{resource}]": names for resource, names in (fields or {}).items()})
    filter_ = combine_filters(conditions)
    if filter_:
        params["filter"] = filter_
    yield from client.paginate(GET_EVENTS.path, endpoint=GET_EVENTS.operation_id, params=params)


def flatten_event(resource: dict[str, Any], included: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """One JSON:API event resource (with the page's ``included`` by (type, id)) as a flat dict."""
    attributes = resource.get("attributes") or {}
    properties = dict(attributes.get("event_properties") or {})
    metric_id = _related_id(resource, "metric")
    profile_id = _related_id(resource, "profile")
    metric = included.get(("metric", metric_id or ""), {})
    profile = included.get(("profile", profile_id or ""), {})
    return {
        "id": resource.get("id"),
        "metric": metric.get("name"),
        "metric_id": metric_id,
        "profile_id": profile_id,
        "email": profile.get("email"),
        "datetime": attributes.get("datetime"),
        "unique_id": properties.pop(UNIQUE_ID_KEY, None),
        "value": properties.pop(VALUE_KEY, None),
        "properties": properties,
    }


def iter_profiles(
    client: KlaviyoClient, email: str | None = None, *, page_size: int = GET_PROFILES.max_items or 100
) -> Iterator[dict[str, Any]]:
    """Profiles (all, or the one with ``email``), flattened (:data:`PROFILE_COLUMNS`)."""
    params: dict[str, Any] = {"page[size]": page_size}
    if email is not None:
        params["filter"] = f"equals(email,{quote(email)})"
    yield from _iter_profile_pages(client, params)


def iter_profiles_by_email(client: KlaviyoClient, emails: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Profiles whose e-mail is one of ``emails``, looked up 100 at a time with ``any(email,[...])``."""
    chunk_size = GET_PROFILES.max_items or 100
    pending = list(dict.fromkeys(emails))
    for chunk in chunks(pending, chunk_size):
        params = {"page[size]": chunk_size, "filter": f"any(email,[{','.join(quote(e) for e in chunk)}])"}
        yield from _iter_profile_pages(client, params)


def _iter_profile_pages(client: KlaviyoClient, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for page in client.paginate(GET_PROFILES.path, endpoint=GET_PROFILES.operation_id, params=params):
        for resource in page.get("data") or []:
            attributes = resource.get("attributes") or {}
            yield {
                "id": resource.get("id"),
                "email": attributes.get("email"),
                "first_name": attributes.get("first_name"),
                "last_name": attributes.get("last_name"),
                "created": attributes.get("created"),
                "updated": attributes.get("updated"),
                "properties": attributes.get("properties") or {},
            }


def events_frame(client: KlaviyoClient, **filters: Any) -> pandas.DataFrame:
    """:func:`iter_events` as a DataFrame (``datetime`` parsed to UTC), for the notebooks."""
    import pandas

    frame = pandas.DataFrame(list(iter_events(client, **filters)), columns=list(EVENT_COLUMNS))
    frame["datetime"] = pandas.to_datetime(frame["datetime"], utc=True, format="ISO8601")
    return frame


def profiles_frame(client: KlaviyoClient, email: str | None = None) -> pandas.DataFrame:
    """:func:`iter_profiles` as a DataFrame, with each custom property also as its own column."""
    import pandas

    frame = pandas.DataFrame(list(iter_profiles(client, email)), columns=list(PROFILE_COLUMNS))
    custom = pandas.json_normalize(frame["properties"].tolist(), max_level=0) if len(frame) else pandas.DataFrame()
    custom = custom.drop(columns=[c for c in custom.columns if c in frame.columns])
    return pandas.concat([frame, custom.set_index(frame.index)], axis=1)


def _included(page: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (item.get("type", ""), item.get("id", "")): item.get("attributes") or {}
        for item in page.get("included") or []
    }


def _related_id(resource: dict[str, Any], name: str) -> str | None:
    data = ((resource.get("relationships") or {}).get(name) or {}).get("data")
    return data.get("id") if isinstance(data, dict) else None

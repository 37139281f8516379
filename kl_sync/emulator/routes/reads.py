"""Reading the account back: ``GET /api/events`` (with ``include=metric,profile``),
``GET /api/profiles`` and ``GET /api/metrics``, each a cursor-paged collection filtered as its spec
slice allows (:mod:`kl_sync.emulator.filters`)."""

from __future__ import annotations

from starlette.responses import Response

from kl_sync.emulator import filters
from kl_sync.emulator.documents import collection, page_args
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.resources import API_INTEGRATION, event_resource, metric_resource, profile_resource
from kl_sync.emulator.routes.profiles import profile_resources
from kl_sync.emulator.storage.reads import Page

router = OperationRouter()


@router.read("get_events")
def get_events(call: Call) -> Response:
    params, store, base = call.params, call.store, call.base_url
    conditions = filters.conditions(call.operation, params.get("filter"))
    sort, after, size = page_args(call)
    page = store.page_events(conditions, sort, after, size)
    data = [event_resource(row, base, params.get("fields[event]")) for row in page.rows]
    included = None
    include = set(filter(None, (params.get("include") or "").split(",")))
    if include:
        included = []
        if "metric" in include:
            metrics = store.metrics_by_id(sorted({row["metric_id"] for row in page.rows}))
            included += [metric_resource(m, base, params.get("fields[metric]")) for m in metrics.values()]
        if "profile" in include:
            profiles = store.profiles_by_id(sorted({row["profile_id"] for row in page.rows}))
            fields = params.get("fields[profile]")
            included += [profile_resource(p, base, fields=fields) for p in profiles.values()]
    return collection(call, page, data, included)


@router.read("get_profiles")
def get_profiles(call: Call) -> Response:
    conditions = filters.conditions(call.operation, call.params.get("filter"))
    sort, after, size = page_args(call)
    page = call.store.page_profiles(conditions, sort, after, size)
    return collection(call, page, profile_resources(call.store, page.rows, call.base_url, call.params))


@router.read("get_metrics")
def get_metrics(call: Call) -> Response:
    conditions = filters.conditions(call.operation, call.params.get("filter"))
    _, after, size = page_args(call)
    page = call.store.page_metrics(after, size)
    # Every metric here came in through the API, so it belongs to the "API" integration.
    if any(c.value != API_INTEGRATION[c.field.split(".")[1]] for c in conditions):
        page = Page([], None)
    data = [metric_resource(row, call.base_url, call.params.get("fields[metric]")) for row in page.rows]
    return collection(call, page, data)

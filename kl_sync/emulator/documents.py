"""The JSON:API documents routes answer with, and the cursor paging their collections share.

:func:`api_response` serializes a document (or answers with none: 202, 204); :func:`resource_document`
is one resource with its ``links``; :func:`collection` a page of resources with ``self`` and ``next``
links; :func:`page_args` reads a collection request's ``sort``, ``page[cursor]`` and ``page[size]``.
The resource objects themselves are built in :mod:`.resources`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from kl_sync.emulator.errors import fail
from kl_sync.emulator.gate import Call
from kl_sync.emulator.spec import JSON_API
from kl_sync.emulator.storage.reads import Page, decode_cursor

METRICS_PAGE_SIZE = 200  # get_metrics: "Returns a maximum of 200 results per page."


def api_response(document: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if document is None:
        return Response(status_code=status, headers=headers)
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(content=body, status_code=status, media_type=JSON_API, headers=headers)


def resource_document(resource: dict[str, Any], status: int = 200, included: list | None = None) -> Response:
    document: dict[str, Any] = {"data": resource, "links": resource["links"]}
    if included is not None:
        document["included"] = included
    return api_response(document, status)


def collection(call: Call, page: Page, data: list[dict[str, Any]], included: list | None = None) -> Response:
    request = call.request
    base = call.base_url
    params = [(k, v) for k, v in request.query_params.multi_items()]
    links = {"self": f"{base}{request.url.path}" + (f"?{urlencode(params)}" if params else "")}
    if page.next_cursor is not None:
        following = [(k, v) for k, v in params if k != "page[cursor]"] + [("page[cursor]", page.next_cursor)]
        links["next"] = f"{base}{request.url.path}?{urlencode(following)}"
    document: dict[str, Any] = {"data": data, "links": links}
    if included is not None:
        document["included"] = included
    return api_response(document)


def page_args(call: Call) -> tuple[str | None, list[Any] | None, int]:
    """(sort, key the page starts after, page size) from the query."""
    params = call.params
    after = None
    if "page[cursor]" in params:
        try:
            after = decode_cursor(params["page[cursor]"])
        except ValueError as exc:
            raise fail(400, "invalid", f"Invalid page cursor: {exc}.", parameter="page[cursor]") from None
    sizes = call.operation.page_size()
    size = int(params["page[size]"]) if "page[size]" in params else (sizes[0] if sizes else METRICS_PAGE_SIZE)
    return params.get("sort"), after, size

"""The legacy ``/api/track`` and ``/api/identify``: Klaviyo retired them on 2024-06-30 and answers
410 Gone (the browser side uses ``klaviyo.track`` / ``klaviyo.identify`` and ``/client/events``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import fail

router = APIRouter()


@router.api_route("/api/track", methods=["GET", "POST"])
@router.api_route("/api/identify", methods=["GET", "POST"])
async def retired(request: Request) -> Response:
    error = fail(410, "gone", "This legacy API was retired on 2024-06-30; use /api/events or /client/events.")
    return api_response(error.body(), 410)

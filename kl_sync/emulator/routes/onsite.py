"""The browser's side of the emulator: the onsite script at the loader's URLs, and CORS on ``/client/*``.

A page loads Klaviyo's script from ``//static.klaviyo.com/onsite/js/<PUBLIC_KEY>/klaviyo.js`` (the
current docs' loader) or ``//static.klaviyo.com/onsite/js/klaviyo.js?company_id=<PUBLIC_KEY>`` (the
older form the store's own notes use); pointed at the emulator (``<emulator>/onsite/js/...``), the
same paths serve ``static/klaviyo.js``, a small stand-in that implements the ``klaviyo`` object's
documented surface and posts to this emulator's ``/client/*`` operations (its header says what is
documented and what is not). These are plain routes, not API operations: no key, no revision.

The client operations are meant to be called from "publicly-browseable, client-side environments"
(the spec's words for ``create_client_event`` and ``create_client_profile``), that is from a shop's
pages on another origin, so a browser must be let in: :class:`ClientCors` answers the CORS preflight
of ``/client/*`` and marks its answers readable by any origin. The private ``/api/*`` operations get
no CORS headers, so a page cannot call them (nor should it hold a private key).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from kl_sync.constants import KLAVIYO_REVISION
from kl_sync.emulator.errors import fail
from kl_sync.emulator.spec import OPERATION_IDS, operation

router = APIRouter()

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "klaviyo.js"

#: Request headers a page's script may send to ``/client/*`` (the JSON:API media type is not one a
#: browser sends without asking, and ``revision`` is Klaviyo's own).
CORS_REQUEST_HEADERS = "content-type, revision, accept"


@cache
def _script_template() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def onsite_script(api_base: str, company_id: str) -> str:
    """``static/klaviyo.js`` with its account and this emulator's address filled in."""
    values = {"__API__": api_base, "__COMPANY__": company_id, "__REVISION__": KLAVIYO_REVISION}
    script = _script_template()
    for placeholder, value in values.items():
        script = script.replace(f'"{placeholder}"', json.dumps(value), 1)
    return script


def _script_answer(request: Request, company_id: str) -> Response:
    # Served for any public key, as a CDN would: the key is checked where it matters, when the
    # script posts to /client/* with it.
    return Response(
        onsite_script(str(request.base_url).rstrip("/"), company_id),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/onsite/js/{company_id}/klaviyo.js")
async def klaviyo_js(request: Request, company_id: str) -> Response:
    return _script_answer(request, company_id)


@router.get("/onsite/js/klaviyo.js")
async def klaviyo_js_by_query(request: Request) -> Response:
    company_id = request.query_params.get("company_id")
    if not company_id:
        raise fail(400, "invalid", "The loader needs ?company_id=<public API key>.", parameter="company_id")
    return _script_answer(request, company_id)


# --- CORS for the client operations -----------------------------------------------------------------


@cache
def client_paths() -> frozenset[str]:
    """The paths of the public (``/client/*``) operations the emulator serves."""
    return frozenset(op.path for op in map(operation, OPERATION_IDS) if op.public)


class ClientCors:
    """ASGI middleware: CORS for the public operations only; every other request passes untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in client_paths():
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            preflight = Response(status_code=204, headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
                "Access-Control-Max-Age": "600",
            })
            await preflight(scope, receive, send)
            return

        async def send_readable(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"access-control-allow-origin", b"*")]
            await send(message)

        await self.app(scope, receive, send_readable)

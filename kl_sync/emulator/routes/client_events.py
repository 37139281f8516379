"""The browser side: ``POST /client/events?company_id=<public key>``, the event a site's
``klaviyo.track`` sends. It carries no private key (the gate checks ``company_id`` instead), and
may not change an existing profile's identifiers. The onsite ``klaviyo.js`` that sends it from a page
is served by :mod:`.onsite`."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.routes.events import store_events
from kl_sync.emulator.rules.events import read_single_event
from kl_sync.emulator.storage.values import utc_now

router = OperationRouter()


@router.write("create_client_event")
def create_client_event(call: Call, body: Any, problems: list[Problem]) -> Response:
    store_events(call, read_single_event(body, utc_now(), "client"), "client", problems)
    return api_response(None, 202)

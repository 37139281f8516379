"""Server-side events: ``POST /api/event-bulk-create-jobs`` and ``POST /api/events``.

Both answer 202 with no body once every event is stored; a request with any problem stores none.
Klaviyo's own processing after the 202 (a delay before an event can be read back, or its loss)
would sit in :func:`store_events`, which :mod:`.client_events` shares.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.rules.common import Read, raise_problems
from kl_sync.emulator.rules.events import read_bulk_events, read_single_event
from kl_sync.emulator.storage import Store
from kl_sync.emulator.storage.values import utc_now

router = OperationRouter()


def store_events(store: Store, read: Read, source: str, problems: list[Problem]) -> None:
    """Store a request's profiles and events in one transaction, or reject it whole."""
    raise_problems(problems + read.problems)
    with store.transaction() as tx:
        applied = tx.upsert_profiles(read.profiles, source)
        profile_ids = {id(profile): profile_id for profile, (profile_id, _) in zip(read.profiles, applied)}
        tx.add_events([(event, profile_ids[id(event.profile)]) for event in read.events])


@router.write("bulk_create_events")
def bulk_create_events(call: Call, body: Any, problems: list[Problem]) -> Response:
    store_events(call.store, read_bulk_events(body, utc_now()), "server", problems)
    return api_response(None, 202)


@router.write("create_event")
def create_event(call: Call, body: Any, problems: list[Problem]) -> Response:
    store_events(call.store, read_single_event(body, utc_now(), "server"), "server", problems)
    return api_response(None, 202)

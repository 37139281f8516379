"""Server-side events: ``POST /api/event-bulk-create-jobs`` and ``POST /api/events``.

Both answer 202 with no body once every event is accepted; a request with any problem stores none.
What Klaviyo does after the 202 (a delay before an event can be read back, now and then its loss:
:mod:`kl_sync.emulator.processing`) happens in :func:`store_events`, which :mod:`.client_events`
shares.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.rules.common import Read, raise_problems
from kl_sync.emulator.rules.events import read_bulk_events, read_single_event, repeated_in_request
from kl_sync.emulator.storage.values import utc_now

router = OperationRouter()


def store_events(call: Call, read: Read, source: str, problems: list[Problem]) -> None:
    """Accept a request's profiles and events in one transaction, or reject it whole: the events are
    kept for processing (readable after the account's delay) or lost, as :mod:`.processing` draws."""
    raise_problems(problems + read.problems)
    processing = call.emulator.processing
    with call.store.transaction() as tx:
        applied = tx.upsert_profiles(read.profiles, source)
        profile_ids = {id(profile): profile_id for profile, (profile_id, _) in zip(read.profiles, applied)}
        events = [(event, profile_ids[id(event.profile)]) for event in read.events]
        raise_problems(repeated_in_request(events))
        tx.add_events(events, lost=processing.lost(len(events)), processed_at=processing.ready_at())


@router.write("bulk_create_events")
def bulk_create_events(call: Call, body: Any, problems: list[Problem]) -> Response:
    store_events(call, read_bulk_events(body, utc_now()), "server", problems)
    return api_response(None, 202)


@router.write("create_event")
def create_event(call: Call, body: Any, problems: list[Problem]) -> Response:
    store_events(call, read_single_event(body, utc_now(), "server"), "server", problems)
    return api_response(None, 202)

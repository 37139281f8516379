"""The browser side's profiles: ``POST /client/profiles?company_id=<public key>``
(create_client_profile), what a site's ``klaviyo.identify`` sends once it knows an e-mail.

Like ``/client/events`` it takes the public key instead of a private one (the gate checks
``company_id``) and answers 202 with no body; it "creates or updates properties about a profile", but
"to update a profile's existing identifiers (e.g., email), you must use a server-side endpoint ...
Attempts to do so via client-side endpoints will return a 202, however the identifier field(s) will
not be updated" (the spec's description): the write is a ``client`` one, which leaves identifiers
alone."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import Problem
from kl_sync.emulator.gate import Call, OperationRouter
from kl_sync.emulator.rules.common import raise_problems
from kl_sync.emulator.rules.profiles import read_profile_upsert

router = OperationRouter()


@router.write("create_client_profile")
def create_client_profile(call: Call, body: Any, problems: list[Problem]) -> Response:
    read = read_profile_upsert(body)
    raise_problems(problems + read.problems)
    with call.store.transaction() as tx:
        tx.upsert_profile(read.profiles[0], source="client")
    return api_response(None, 202)

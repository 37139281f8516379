"""The browser side: what the store's pages send through Klaviyo's JavaScript, sent the same way.

Klaviyo's Client API takes the site's PUBLIC key as the ``company_id`` query parameter and must
never carry the private API key, so these calls go through a client built without one. Two of its
writes are what a page's ``klaviyo.identify`` / ``klaviyo.track`` amount to:

- ``POST /client/profiles`` (create_client_profile): a profile's attributes and properties;
- ``POST /client/events`` (create_client_event): one event, its profile inside it.

The demo uses them to play what visitors' browsers sent (:mod:`kl_sync.onsite`). The spec lets a
client event carry its own ``time``, so replayed history keeps its real timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kl_sync.constants import KLAVIYO_BASE_URL, KLAVIYO_REVISION
from kl_sync.klaviyo.batches import ItemOutcome, SENT
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.errors import RejectedError, RetryableError
from kl_sync.klaviyo.events import build_event_body
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, RateLimiter
from kl_sync.klaviyo.profiles import build_profile_resource
from kl_sync.payloads import EventPayload, ProfilePayload
from kl_sync.retry import REQUEST_RETRIES, Retries

CREATE_CLIENT_EVENT = ENDPOINT_LIMITS["create_client_event"]
CREATE_CLIENT_PROFILE = ENDPOINT_LIMITS["create_client_profile"]


def build_client_event_body(event: EventPayload) -> dict[str, Any]:
    """Body of ``POST /client/events``: the same JSON:API event as the server-side create_event."""
    return build_event_body(event)


def build_client_profile_body(profile: ProfilePayload) -> dict[str, Any]:
    """Body of ``POST /client/profiles``: one profile resource, identified by e-mail."""
    return {"data": build_profile_resource(profile)}


#: Each client write: its endpoint, and the builder of its body from a payload.
CLIENT_WRITES: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]] = {
    CREATE_CLIENT_EVENT.operation_id: (CREATE_CLIENT_EVENT, build_client_event_body),
    CREATE_CLIENT_PROFILE.operation_id: (CREATE_CLIENT_PROFILE, build_client_profile_body),
}


def build_client_body(operation_id: str, payload: Any) -> dict[str, Any]:
    """The body of one client write, by its operationId."""
    return CLIENT_WRITES[operation_id][1](payload)


def send_client_requests(
    base_url: str,
    company_id: str,
    requests: Sequence[tuple[str, Any]],
    revision: str = KLAVIYO_REVISION,
    *,
    limiter: RateLimiter | None = None,
    retries: Retries = REQUEST_RETRIES,
) -> list[ItemOutcome]:
    """Send ``(operationId, payload)`` client writes one request each, in order, as a browser does;
    one outcome per request.

    A 4xx (other than 401/403) rejects that request only; retryable failures after the client's
    own attempts leave it ``retry``; an :class:`~kl_sync.klaviyo.errors.AuthError` (a bad company
    id) propagates.
    """
    outcomes: list[ItemOutcome] = []
    with KlaviyoClient(None, base_url or KLAVIYO_BASE_URL, revision, limiter=limiter, retries=retries) as client:
        for operation_id, payload in requests:
            endpoint, build = CLIENT_WRITES[operation_id]
            try:
                client.request(
                    "POST",
                    endpoint.path,
                    endpoint=endpoint.operation_id,
                    params={"company_id": company_id},
                    json=build(payload),
                )
            except RejectedError as err:
                outcomes.append(ItemOutcome("rejected", err.message))
            except RetryableError as err:
                outcomes.append(ItemOutcome("retry", err.message))
            else:
                outcomes.append(SENT)
    return outcomes


def send_client_events(
    base_url: str, company_id: str, events: Sequence[EventPayload], revision: str = KLAVIYO_REVISION, **options: Any
) -> list[ItemOutcome]:
    """Events alone (:func:`send_client_requests`); one outcome per event, in order."""
    requests = [(CREATE_CLIENT_EVENT.operation_id, event) for event in events]
    return send_client_requests(base_url, company_id, requests, revision, **options)

"""The browser side: what the store's pages track with Klaviyo's JavaScript, sent the same way.

``POST /client/events?company_id=<public key>`` (create_client_event) is Klaviyo's public endpoint:
it takes the site's PUBLIC key as a query parameter and must never carry the private API key, so
these calls go through a client built without one. The demo uses this to play what a visitor's browser
would track (Started Checkout, Completed Signup, Cancelled Account). The spec lets a client event carry
its own ``time``, so replayed history keeps its real timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kl_sync.constants import KLAVIYO_BASE_URL, KLAVIYO_REVISION
from kl_sync.klaviyo.batches import ItemOutcome, SENT
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.errors import RejectedError, RetryableError
from kl_sync.klaviyo.events import build_event_body
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, RateLimiter
from kl_sync.payloads import EventPayload
from kl_sync.retry import REQUEST_RETRIES, Retries

CREATE_CLIENT_EVENT = ENDPOINT_LIMITS["create_client_event"]


def build_client_event_body(event: EventPayload) -> dict[str, Any]:
    """Body of ``POST /client/events``: the same JSON:API event as the server-side create_event."""
    return build_event_body(event)


def send_client_events(
    base_url: str,
    company_id: str,
    events: Sequence[EventPayload],
    revision: str = KLAVIYO_REVISION,
    *,
    limiter: RateLimiter | None = None,
    retries: Retries = REQUEST_RETRIES,
) -> list[ItemOutcome]:
    """Send events one request each, as browsers do; one outcome per event, in order.

    A 4xx (other than 401/403) rejects that event only; retryable failures after the client's own
    attempts leave it ``retry``; an :class:`~kl_sync.klaviyo.errors.AuthError` (a bad company id)
    propagates.
    """
    outcomes: list[ItemOutcome] = []
    with KlaviyoClient(
        None, base_url or KLAVIYO_BASE_URL, revision,
        limiter=limiter, retries=retries,
    ) as client:
        for event in events:
            try:
                client.request(
                    "POST",
                    CREATE_CLIENT_EVENT.path,
                    endpoint=CREATE_CLIENT_EVENT.operation_id,
                    params={"company_id": company_id},
                    json=build_client_event_body(event),
                )
            except RejectedError as err:
                outcomes.append(ItemOutcome("rejected", err.message))
            except RetryableError as err:
                outcomes.append(ItemOutcome("retry", err.message))
            else:
                outcomes.append(SENT)
    return outcomes

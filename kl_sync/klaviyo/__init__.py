"""The Klaviyo client: everything kl-sync writes to or reads from Klaviyo goes through this package.

- :mod:`.client`: :class:`KlaviyoClient` (session, pinned revision, retries), the body encoder.
- :mod:`.stats`: what the client counts (:class:`RequestRecord` per attempt, :class:`ClientStats`).
- :mod:`.errors`: :class:`RetryableError` / :class:`RejectedError` / :class:`AuthError`, classified once.
- :mod:`.limits`: per-endpoint limits from the spec, :class:`RateLimiter`, :class:`WindowRateLimiter`.
- :mod:`.events`, :mod:`.profiles`, :mod:`.suppressions`, :mod:`.lists`: pure ``build_*`` bodies and
  ``send_*`` I/O returning one :class:`ItemOutcome` per input row.
- :mod:`.reads`: events, profiles and metrics read back (and as DataFrames).
- :mod:`.client_events`: the public browser-side writes (client events and profiles), for the demo.
"""

from kl_sync.klaviyo.batches import Batch, ItemOutcome
from kl_sync.klaviyo.client import KlaviyoClient, Response
from kl_sync.klaviyo.client_events import (
    build_client_body,
    build_client_event_body,
    build_client_profile_body,
    send_client_events,
    send_client_requests,
)
from kl_sync.klaviyo.errors import AuthError, KlaviyoError, RejectedError, RetryableError
from kl_sync.klaviyo.events import build_event_body, build_event_bulk_bodies, send_event, send_events
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS, EndpointLimits, RateLimiter, WindowRateLimiter
from kl_sync.klaviyo.lists import add_profiles_to_list, create_list, find_list
from kl_sync.klaviyo.profiles import (
    build_profile_bulk_import_bodies,
    build_profile_import_body,
    send_profile,
    send_profiles,
    upsert_profile,
)
from kl_sync.klaviyo.reads import events_frame, iter_events, iter_metrics, iter_profiles, profiles_frame
from kl_sync.klaviyo.stats import ClientStats, RequestRecord
from kl_sync.klaviyo.suppressions import build_suppression_bodies, send_suppression, send_suppressions

__all__ = [
    "ENDPOINT_LIMITS",
    "AuthError",
    "Batch",
    "ClientStats",
    "EndpointLimits",
    "ItemOutcome",
    "KlaviyoClient",
    "KlaviyoError",
    "RateLimiter",
    "RejectedError",
    "RequestRecord",
    "Response",
    "RetryableError",
    "WindowRateLimiter",
    "add_profiles_to_list",
    "build_client_body",
    "build_client_event_body",
    "build_client_profile_body",
    "build_event_body",
    "build_event_bulk_bodies",
    "build_profile_bulk_import_bodies",
    "build_profile_import_body",
    "build_suppression_bodies",
    "create_list",
    "events_frame",
    "find_list",
    "iter_events",
    "iter_metrics",
    "iter_profiles",
    "profiles_frame",
    "send_client_events",
    "send_client_requests",
    "send_event",
    "send_events",
    "send_profile",
    "send_profiles",
    "send_suppression",
    "send_suppressions",
    "upsert_profile",
]

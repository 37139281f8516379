"""The emulator's routes: one router per Klaviyo resource, cut as :mod:`kl_sync.klaviyo` is.

- :mod:`.events`: server-side events, bulk and single.
- :mod:`.client_events`: the browser-side ``POST /client/events`` (public key).
- :mod:`.client_profiles`: the browser-side ``POST /client/profiles`` (public key).
- :mod:`.profiles`: profile upserts and bulk import jobs.
- :mod:`.suppressions`: bulk suppression jobs.
- :mod:`.lists`: lists and their members.
- :mod:`.reads`: events, profiles and metrics read back.
- :mod:`.legacy`: the retired ``/api/track`` and ``/api/identify``.
- :mod:`.onsite`: the onsite ``klaviyo.js`` at the loader's paths, and CORS for ``/client/*``.

A new endpoint is a handler in its resource's router, declared by operationId
(``@router.write("<operationId>")`` or ``@router.read(...)``, see :mod:`kl_sync.emulator.gate`), its
rule in :mod:`kl_sync.emulator.rules`, and its spec slice ``kl_sync/emulator/spec/<operationId>.json``
(which gives its method, path, limits and schemas). A new resource is one more module here, in
:data:`ROUTERS`. A route that is no API operation (the onsite ``klaviyo.js`` script) is a plain
FastAPI route on a router here, as in :mod:`.onsite` and :mod:`.legacy`.
"""

from kl_sync.emulator.routes import (
    client_events,
    client_profiles,
    events,
    legacy,
    lists,
    onsite,
    profiles,
    reads,
    suppressions,
)

#: In the order the app serves them. Where two routes share a path (``POST`` and ``GET /api/events``),
#: the first one's methods are what a 405 answers in ``Allow``: the writes come first.
ROUTERS = (
    legacy.router,
    events.router,
    client_events.router,
    client_profiles.router,
    onsite.router,
    reads.router,
    profiles.router,
    suppressions.router,
    lists.router,
)

"""The emulator's HTTP app: :func:`create_app` serves the routers of :mod:`.routes` behind the
journal, and answers every error as Klaviyo does.

A ``--latency`` holds every request and its answer on the way (:mod:`.latency`). Every request is
journaled first (:mod:`.journal`), then given CORS headers if it is for a
``/client/*`` operation (:mod:`.routes.onsite`), then routed; an operation's route passes the
gate (:mod:`.gate`) before its handler runs. Errors raised anywhere are
:class:`~kl_sync.emulator.errors.ApiProblemError`, answered with Klaviyo's error body (and the rate
headers the gate granted); an unknown path gets Klaviyo's 404, a known path with another method 405.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from kl_sync.emulator.account import Emulator
from kl_sync.emulator.config import EmulatorConfig
from kl_sync.emulator.connections import ConnectionDropped, DroppedConnection
from kl_sync.emulator.documents import api_response
from kl_sync.emulator.errors import ApiProblemError, fail
from kl_sync.emulator.journal import JournalMiddleware
from kl_sync.emulator.latency import LatencyMiddleware
from kl_sync.emulator.routes import ROUTERS
from kl_sync.emulator.routes.onsite import ClientCors


def create_app(data_dir: str | Path, config: EmulatorConfig | None = None) -> FastAPI:
    """A Klaviyo emulator over ``data_dir`` (created if missing; reused if it holds an account)."""
    emulator = Emulator.open(data_dir, config or EmulatorConfig())
    app = FastAPI(title="Klaviyo emulator (kl-sync)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    app.add_exception_handler(ApiProblemError, _problem_answer)
    app.add_exception_handler(ConnectionDropped, _dropped)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(ClientCors)  # inside the journal, so preflights are journaled too
    app.add_middleware(JournalMiddleware, journal=emulator.journal)
    if emulator.config.latency or emulator.config.jitter:
        # Outermost: the journal and the rate windows see a request when it arrives.
        app.add_middleware(LatencyMiddleware, latency=emulator.config.latency,
                           jitter=emulator.config.jitter, seed=emulator.config.lose_seed)
    return app


async def _problem_answer(request: Request, exc: ApiProblemError) -> Response:
    headers = dict(exc.headers)
    if exc.http_status != 429:
        headers.update(getattr(request.state, "rate_headers", {}))
    return api_response(exc.body(), exc.http_status, headers)


async def _dropped(request: Request, exc: ConnectionDropped) -> Response:
    return DroppedConnection()


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 405:
        error = fail(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
        return api_response(error.body(), 405, dict(exc.headers or {}))
    error = fail(exc.status_code, "not_found", f"The path {request.url.path} could not be found.")
    return api_response(error.body(), exc.status_code)

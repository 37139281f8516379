"""Dropping a client's TCP connection from inside a request, with no HTTP answer at all.

ASGI gives an application no handle on its connection, so the emulator serves HTTP with a small
subclass of uvicorn's h11 protocol that records each connection by its (server, client) addresses,
the same pair the request's ASGI scope carries. :func:`drop_connection` finds it and resets it
(``SO_LINGER`` 0, then abort: the client reads ECONNRESET, or ``RemoteDisconnected`` when it was not
reading yet), which is what a crashed load balancer or a cut network looks like from outside.

A route or the gate answers with :class:`DroppedConnection` (or raises :class:`ConnectionDropped`,
which the app answers so) to have its connection dropped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from kl_sync.emulator.errors import fail
from kl_sync.emulator.journal import context_of
from kl_sync.emulator.spec import JSON_API

_OPEN: dict[tuple[Any, Any], DroppableH11Protocol] = {}


class DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, findable by address so a request can reset its own connection."""

    _address: tuple[Any, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # uvicorn sets TCP_NODELAY only on sockets it binds itself; without it every answer on a
            # kept-alive connection waits ~40 ms for Nagle's algorithm and the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._address = (self.server, self.client)
        _OPEN[self._address] = self

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None and _OPEN.get(self._address) is self:
            del _OPEN[self._address]
        super().connection_lost(exc)

    def reset(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass  # already gone: abort() below still closes our side
        self.transport.abort()


def _address_of(scope: dict[str, Any]) -> tuple[Any, Any]:
    server, client = scope.get("server"), scope.get("client")
    return (tuple(server) if server else None, tuple(client) if client else None)


async def drop_connection(scope: dict[str, Any]) -> bool:
    """Reset the connection this request came on. False when the server is not ours (then the
    caller must answer some other way)."""
    protocol = _OPEN.get(_address_of(scope))
    if protocol is None:
        return False
    protocol.reset()
    # abort() schedules connection_lost on the loop; let it run so uvicorn marks the request
    # disconnected and sends nothing (no 500 of its own, no error log).
    for _ in range(3):
        await asyncio.sleep(0)
    return True


class ConnectionDropped(Exception):
    """Raised to answer a request by resetting its connection."""


class DroppedConnection(Response):
    """A "response" that resets the TCP connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        context_of(scope).finish(None)
        if await drop_connection(scope):
            return
        # Not served by our protocol (e.g. a test client): say so rather than pretend.
        error = fail(500, "error", "The emulator was asked to drop this connection but cannot here.")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", JSON_API.encode())]})
        await send({"type": "http.response.body", "body": body})

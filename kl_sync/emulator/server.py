"""Running the emulator: in this process on a background thread (tests, demo, benchmarks), or in the
foreground (the ``kl-sync emulator`` command).

    with running_emulator(tmp_path / "klaviyo") as emu:
        requests.post(f"{emu.base_url}/api/events", headers=..., json=...)
        assert emu.events()[0]["metric"] == "Placed Order"
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from kl_sync.emulator.account import Emulator
from kl_sync.emulator.app import create_app
from kl_sync.emulator.config import EmulatorConfig
from kl_sync.emulator.connections import DroppableH11Protocol
from kl_sync.emulator.faults import FaultSpec

STARTUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 5


def _config(app: Any, host: str, port: int, *, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=DroppableH11Protocol,  # so a fault can reset a connection (see connections.py)
        ws="none",
        lifespan="off",
        log_config=None,  # leave the host process's logging alone
        log_level=log_level,
        access_log=False,
        proxy_headers=False,  # the scope's client address must be the socket's, for drops
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        # Keep idle connections longer than a client pauses between batches, so a pooled
        # connection closing under it is never mistaken for an injected drop.
        timeout_keep_alive=75,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class EmulatorHandle:
    """A running emulator: where it listens, and a direct look at its account for assertions."""

    def __init__(self, app: Any, host: str, port: int):
        self.app = app
        self._emulator: Emulator = app.state.emulator
        self.host = host
        self.port = port
        self._sock = _bind(host, port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(_config(app, host, self.port))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The first accepted private key."""
        return self._emulator.config.api_keys[0]

    @property
    def public_key(self) -> str:
        return self._emulator.config.public_key

    @property
    def data_dir(self) -> Path:
        return self._emulator.data_dir

    def start(self) -> EmulatorHandle:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=f"klaviyo-emulator:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Klaviyo emulator did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        # force_exit: don't wait for idle keep-alive connections (they are closed either way).
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE + 10)
        self._sock.close()
        self._emulator.close()

    # the account, read directly ----------------------------------------------------------------

    def events(self, *, accepted: bool = False) -> list[dict[str, Any]]:
        """What Klaviyo shows: the processed events, oldest write first: id, metric (name),
        profile_email, profile_id, unique_id, time (ISO, UTC), value, value_currency, backfill,
        properties, source ("server"|"client"), status ("shown"). With ``accepted``: every event a
        202 accepted, also those still processing (status "processing") and those lost ("lost")."""
        return self._emulator.store.events(accepted=accepted)

    def profiles(self) -> list[dict[str, Any]]:
        """id, email, phone_number, external_id, first_name, last_name, properties, created, updated."""
        return self._emulator.store.profiles()

    def suppressions(self) -> list[dict[str, Any]]:
        """email, time, reason, profile_id."""
        return self._emulator.store.suppressions()

    def plant_suppression(self, email: str, reason: str, at: str | None = None) -> None:
        """What Klaviyo learns without kl-sync (tests, the demo): ``email`` unsubscribed from a Klaviyo
        e-mail (``UNSUBSCRIBE``), bounced (``HARD_BOUNCE``), complained (``SPAM_COMPLAINT``)...; its
        profile is created if there is none. ``at``: ISO time (UTC), default now."""
        self._emulator.store.plant_suppression(email, reason, at)

    def lists(self) -> list[dict[str, Any]]:
        """id, name, created, profile_emails."""
        return self._emulator.store.lists()

    def journal(self) -> list[dict[str, Any]]:
        return self._emulator.journal.read()

    # processing and faults -----------------------------------------------------------------------

    def set_processing(self, *, delay: float | None = None, lose: float | None = None, seed: int | None = None) -> None:
        """Change the processing delay and the share of accepted events lost (a new ``lose`` or
        ``seed`` restarts the loss draws); None keeps what is set."""
        self._emulator.processing.set(delay=delay, lose=lose, seed=seed)

    def set_faults(self, faults: FaultSpec | None) -> None:
        """Replace the random faults (and restart their seeded sequence)."""
        self._emulator.faults.set(faults)

    def fail_next(
        self, path: str, status: int | str, count: int = 1, retry_after: float | None = None, slow_seconds: float = 2.0
    ) -> None:
        """The next ``count`` requests to ``path`` fail with ``status`` (or "drop", "drop_after_commit",
        "slow")."""
        self._emulator.faults.fail_next(path, status, count, retry_after, slow_seconds)


@contextmanager
def running_emulator(
    data_dir: str | Path,
    config: EmulatorConfig | None = None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    **options: Any,
) -> Iterator[EmulatorHandle]:
    """Serve an emulator over ``data_dir`` on a background thread (``port=0``: a free port).

    It behaves as ``config`` says, or as the same options given as keywords say
    (``running_emulator(data_dir, api_keys=("pk_x",), rate_limits="real")``: the fields of
    :class:`~kl_sync.emulator.config.EmulatorConfig`)."""
    if config is None:
        config = EmulatorConfig(**options)
    elif options:
        raise TypeError(f"running_emulator takes a config or its options as keywords, not both: {sorted(options)}")
    app = create_app(data_dir, config)
    try:
        handle = EmulatorHandle(app, host, port)
    except BaseException:
        app.state.emulator.close()
        raise
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


class _Stopped(Exception):
    pass


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped()


def serve_forever(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM, then return normally.

    uvicorn shuts down gracefully on either signal and then re-raises it to the handler that was
    there before; that handler (ours) turns it into a normal return, so the account is closed
    cleanly and the command exits 0 instead of dying by the signal."""
    server = uvicorn.Server(_config(app, host, port, log_level=log_level))
    sock = _bind(host, port)
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        app.state.emulator.close()

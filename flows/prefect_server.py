"""The temporary Prefect server a local flow run needs (``kl-sync sync --prefect``, ``make demo``,
``python flows/sync.py``), started so that it dies with the process that started it.

With no API URL configured, Prefect 3 starts a temporary server itself
(``prefect.server.api.server.SubprocessASGIServer``) and stops it only through ``atexit``: a run
killed by SIGKILL, or by SIGTERM's default action, leaves that uvicorn process running (~200 MB
each, issue 14). Here the same server is started the same way, but on Linux its process asks the
kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and the run is pointed at it
through ``PREFECT_API_URL``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kl_sync.failures import Failure

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
#: uvicorn's exit code when its start failed: a port taken, or the app's own start-up failing.
STARTUP_FAILED = 3
#: How long a stopped server has to finish its shutdown before it is killed (as Prefect waits).
STOP_GRACE_SECONDS = 5


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up before any fork (the child must do as little as it can between
    fork and exec); None off Linux, where there is no parent-death signal."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).prctl  # this process's own symbols, libc's among them
    except (OSError, AttributeError):
        return None


def _dies_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    """The child's first act after fork: SIGTERM when the thread that forked it exits (the flag
    survives exec). A parent that died before the flag was set has already gone: exit at once."""

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class TemporaryServer:
    """One temporary Prefect API server on a free loopback port, started as Prefect's own
    ``SubprocessASGIServer`` starts it (the same uvicorn command and environment)."""

    def __init__(self, settings: Any, prctl: Callable[..., int], logger: logging.Logger) -> None:
        self._settings = settings
        self._prctl = prctl
        self._logger = logger
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.address}/api"

    def _spawn(self) -> subprocess.Popen[bytes]:
        import prefect

        self.port = _free_port()
        # What Prefect's _run_uvicorn_command passes: the UI off, the ephemeral server's services,
        # and the settings of this process (its home, hence its database, under .kl_sync/prefect/).
        env = {
            **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **self._settings.to_environment_variables(exclude_unset=True),
        }
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                   "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        # The lines Prefect logs for its own temporary server (the demo shows them).
        self._logger.info(f"Starting temporary server on {self.address}\nSee "
                          "https://www.prefect.io/docs/v3/concepts/server#how-to-guides "
                          "for more information on running a dedicated Prefect server.")
        # The parent-death signal follows the thread that forks, not the process: this one, which
        # runs the whole `with temporary_prefect_server()` block, so it lives as long as the run.
        return subprocess.Popen(command, env=env, preexec_fn=_dies_with(os.getpid(), self._prctl))

    def start(self) -> None:
        import httpx

        timeout = self._settings.server.ephemeral.startup_timeout_seconds
        deadline = time.monotonic() + timeout
        self.process = self._spawn()
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code == STARTUP_FAILED and _port_taken(self.port):
                    # Another process took the port between our look and uvicorn's bind: another one.
                    # (Prefect starts again on any exit code 3, forever when its app cannot start.)
                    self.process = self._spawn()
                    continue
                if code is not None:
                    break
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        code = self.process.poll()
        self.stop()
        ended = f"it exited with code {code}" if code is not None else f"it did not answer within {timeout} s"
        raise Failure(f"the temporary Prefect server did not start: {ended} "
                      "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; or set PREFECT_API_URL to a running server)")

    def stop(self) -> None:
        if self.process is None:
            return
        self._logger.info(f"Stopping temporary server on {self.address}")
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _drain_workers() -> None:
    """Send the run's last logs and events while the server still answers (Prefect's own server
    stops at exit, after them; Prefect's test harness drains them the same way before it stops)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=STOP_GRACE_SECONDS, at_exit=False)


@contextmanager
def temporary_prefect_server() -> Iterator[str | None]:
    """A temporary Prefect API server for the block's flow runs, which ``PREFECT_API_URL`` points
    at; stopped when the block ends (terminated, killed after a few seconds), and on Linux dying
    with this process however it dies. Yields its API URL, or None where Prefect's own behaviour is
    kept: an API URL is configured (environment, .env, profile), Prefect's temporary server is
    turned off (Prefect then says so), or there is no ``prctl`` (not Linux: Prefect starts its own
    server, which a killed run leaves behind).

    Call it after :func:`kl_sync.settings.prefect_defaults`."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging import get_logger
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    prctl = _load_prctl()
    if settings.api.url or not settings.server.ephemeral.enabled or prctl is None:
        yield None
        return
    ensure_logging_setup()
    server = TemporaryServer(settings, prctl, get_logger())
    previous: dict[str, str | None] = {}
    try:
        server.start()
        run_env = {"PREFECT_API_URL": server.api_url}
        if settings.ui_url is None:
            # The server serves no UI (nor does Prefect's own temporary one): no "View at" link to it.
            run_env["PREFECT_UI_URL"] = ""
        previous = {name: os.environ.get(name) for name in run_env}
        os.environ.update(run_env)
        # Prefect reads its settings once, at import: read them again, so every thread of the run
        # (the flow's, its heartbeat's, the log and event workers') talks to this server.
        refresh_global_settings_context()
        yield server.api_url
    finally:
        _drain_workers()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if previous:
            refresh_global_settings_context()
        server.stop()

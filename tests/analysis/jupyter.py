"""A real JupyterLab server for the tests (the project environment's, with the configuration ``make
install`` gave it), on a free loopback port, and saving a notebook through its contents API as
JupyterLab's save and autosave do; plus a scratch git repository set up as ``make install`` sets
up ours."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from kl_sync.analysis.strip import install

REPO = Path(__file__).resolve().parents[2]
#: Seconds to wait for the server to answer (a busy 2-core machine starts JupyterLab in ~5 s).
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Jupyter:
    base_url: str
    token: str
    root_dir: Path

    def save(self, path: Path, notebook: dict[str, Any]) -> None:
        """PUT the notebook model, as JupyterLab does when it saves or autosaves the file at ``path``
        (which is under the server's ``root_dir``)."""
        response = requests.put(
            f"{self.base_url}/api/contents/{path.relative_to(self.root_dir).as_posix()}",
            json={"type": "notebook", "format": "json", "content": notebook},
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )
        response.raise_for_status()


@contextmanager
def running_jupyter(root_dir: Path, scratch: Path) -> Iterator[Jupyter]:
    """``jupyter lab`` of the project's environment, started from the repository's root (as the README
    starts it) and serving ``root_dir``; stopped afterwards."""
    port, token = free_port(), "kl-sync-test-token"
    runtime = scratch / "jupyter-runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root_dir}", f"--IdentityProvider.token={token}", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--allow-root"]
    log = (scratch / "jupyter.log").open("wb")
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    jupyter = Jupyter(f"http://127.0.0.1:{port}", token, root_dir)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {server.returncode}: {(scratch / 'jupyter.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{jupyter.base_url}/api/status", headers={"Authorization": f"token {token}"}, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within {STARTUP_SECONDS} s")
            time.sleep(0.5)
        yield jupyter
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def git(repo: Path, *args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd or repo, check=True, capture_output=True, text=True).stdout


def scratch_repo(path: Path, notebooks: list[str]) -> Path:
    """A git repository holding the guard's files and ``notebooks/<name>`` for each name, set up by the
    same :func:`~kl_sync.analysis.strip.install` as ``make install`` (its Jupyter half into a scratch
    prefix), and committed."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "test")
    for name in (".gitattributes", ".gitignore", "kl_sync/analysis/strip.py", *(f"notebooks/{n}" for n in notebooks)):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, path / name)
    install(path, path.parent / f"{path.name}-prefix")
    git(path, "add", ".gitattributes", ".gitignore", "kl_sync", "notebooks")
    git(path, "commit", "--quiet", "-m", "notebooks")
    return path

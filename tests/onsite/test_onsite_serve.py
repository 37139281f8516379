"""``kl-sync onsite serve``: the demo pages for one customer, with the demo's emulator it starts, and
the browser's requests printed as they arrive; a missing store or customer is one line."""

from __future__ import annotations

import datetime as dt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import insert

from kl_sync.app.cli import main
from kl_sync.db import make_engine
from kl_sync.settings import get_settings
from kl_sync.store.contract import customers, metadata

SIGNED_UP = dt.datetime(2026, 2, 2, 12, 35, 32)


def _store(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url, sqlite_wal=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(customers), [{
            "id": 5, "email": "Sam@Example.com", "first_name": "Sam", "last_name": "Stone", "status": "Stopped",
            "schedule": "Monthly", "box": None, "signup_date": SIGNED_UP, "email_subscribed": True,
            "has_filled_out_profile": False, "created_at": SIGNED_UP, "updated_at": SIGNED_UP + dt.timedelta(days=3),
        }])
    return url


def _read_until(process: subprocess.Popen, marker: str, seconds: float = 60) -> str:
    # os.read, not readline: a buffered readline may hold the rest of a chunk where select() cannot see it.
    data, deadline = b"", time.monotonic() + seconds
    while marker.encode() not in data and time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.5)[0]:
            data += os.read(process.stdout.fileno(), 65536)
    text = data.decode("utf-8", "replace")
    assert marker in text, text
    return text


def test_serve_starts_the_demo_emulator_serves_the_pages_and_prints_what_browsers_send(tmp_path):
    env = {**os.environ, "KL_SYNC_STORE_URL": _store(tmp_path / "store.db")}
    process = subprocess.Popen(
        [sys.executable, "-m", "kl_sync", "onsite", "serve", "--port", "0", "--emulator-port", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        banner = _read_until(process, "Ctrl-C stops.")
        pages = re.findall(r"^\s+(http://127\.0\.0\.1:\d+/\S*)", banner, flags=re.M)
        emulator = re.search(r"^klaviyo\s+(http://127\.0\.0\.1:\d+) \(public key (\w+)\)", banner, flags=re.M)
        assert "customer 5 (sam@example.com)" in banner
        assert [url.rsplit("/", 1)[1] for url in pages] == ["", "sign-up", "first-time", "cancelled", "contact-thanks"]
        page = requests.get(pages[1], timeout=30)
        assert page.status_code == 200
        assert f'src="{emulator[1]}/onsite/js/{emulator[2]}/klaviyo.js"' in page.text

        # What a browser on that page posts: the command prints it as the emulator journals it.
        posted = requests.post(f"{emulator[1]}/client/profiles", params={"company_id": emulator[2]},
                               headers={"revision": "2026-07-15", "content-type": "application/vnd.api+json"},
                               json={"data": {"type": "profile", "attributes": {"email": "sam@example.com"}}}, timeout=30)
        assert posted.status_code == 202
        assert re.search(r"browser\s+/client/profiles\s+202\s+sam@example\.com", _read_until(process, "sam@example.com"))
        assert (tmp_path / ".kl_sync" / "demo" / "emulator" / "journal.jsonl").exists()  # the demo's account
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_a_missing_store_or_customer_or_a_taken_port_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KL_SYNC_STORE_URL", f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert main(["onsite", "serve"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kl-sync: KL_SYNC_STORE_URL: {tmp_path / 'nowhere.db'} does not exist (`make demo` writes the demo store)")
    assert not (tmp_path / "nowhere.db").exists()
    monkeypatch.setenv("KL_SYNC_STORE_URL", _store(tmp_path / "store.db"))
    get_settings.cache_clear()
    assert main(["onsite", "serve", "--customer", "99"]) == 2
    assert capsys.readouterr().err.strip() == "kl-sync: customer 99 is not in the store"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["onsite", "serve", "--emulator-port", str(port)]) == 2
    assert capsys.readouterr().err.strip().startswith(f"kl-sync: cannot start the demo's emulator on port {port} (")

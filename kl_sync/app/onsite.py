"""``kl-sync onsite serve``: the demo site's five pages of one customer (:mod:`kl_sync.onsite.demo_site`),
their loader pointed at a Klaviyo emulator: the demo's, started here, or one at ``--klaviyo-url``.
With the demo's, each request the pages' ``klaviyo.js`` sends is printed as the emulator journals it."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from kl_sync.app.clients import demo_emulator
from kl_sync.settings import DEMO_DIR, EMULATOR_KEY, Settings


class PagesError(Exception):
    """What stops the command, in one line (the CLI prints it)."""


def pages_customer(settings: Settings, customer_id: int | None) -> Any:
    """The customer whose pages are served: ``customer_id``, else the first with all five pages."""
    from sqlalchemy.engine import make_url

    from kl_sync.db import make_engine
    from kl_sync.onsite.demo_site import first_customer_with_every_page, read_customer

    parsed = make_url(settings.store_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise PagesError(f"KL_SYNC_STORE_URL: {parsed.database} does not exist (`make demo` writes the demo store)")
    store = make_engine(settings.store_url, sqlite_wal=False)
    if customer_id is not None:
        facts = read_customer(store, customer_id, site_url=settings.site_url)
        if facts is None:
            raise PagesError(f"customer {customer_id} is not in the store")
    else:
        facts = first_customer_with_every_page(store, site_url=settings.site_url)
        if facts is None:
            raise PagesError("no customer with an e-mail, a completed sign-up and a cancellation: pass --customer ID")
    if facts.email is None:
        raise PagesError(f"customer {facts.id} has no usable e-mail: the pages would identify nobody")
    return facts


@contextmanager
def pages_klaviyo(klaviyo_url: str | None, public_key: str, emulator_port: int) -> Iterator[tuple[str, str, Path | None]]:
    """(origin, public key, journal to follow or None): ``klaviyo_url`` as given, or the demo
    account's emulator started on ``emulator_port`` for as long as the pages are served."""
    if klaviyo_url:
        yield klaviyo_url.rstrip("/"), public_key, None
        return
    from kl_sync.emulator import running_emulator

    with ExitStack() as stack:
        try:
            emulator = stack.enter_context(running_emulator(DEMO_DIR / "emulator", demo_emulator(), port=emulator_port))
        except OSError as exc:
            raise PagesError(f"cannot start the demo's emulator on port {emulator_port} ({exc.strerror}); if "
                             f"`kl-sync emulator` runs there, pass --klaviyo-url http://127.0.0.1:{emulator_port}") from None
        yield emulator.base_url, emulator.public_key, emulator.data_dir / "journal.jsonl"


def serve_pages(settings: Settings, *, customer_id: int | None, host: str, port: int, klaviyo_url: str | None,
                public_key: str, emulator_port: int) -> int:
    """Serve the pages until Ctrl-C (or SIGTERM); 0 when stopped."""
    from kl_sync.onsite.demo_site import DemoSite, make_server
    from kl_sync.onsite.pages import PageSnippets

    facts = pages_customer(settings, customer_id)
    with pages_klaviyo(klaviyo_url, public_key, emulator_port) as (origin, key, journal):
        site = DemoSite(facts, PageSnippets(settings.tz, settings.site_url), public_key=key, klaviyo_origin=origin)
        try:
            server = make_server(site, host, port)
        except OSError as exc:
            raise PagesError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        base = f"http://{host}:{server.server_address[1]}"
        print(f"pages    customer {facts.id} ({facts.email}), served at {base}/ :")
        for page in site.pages():
            print(f"           {base}{page.path:<16} {page.title}: {page.sends}")
        print(f"klaviyo  {origin} (public key {key}); what arrived: GET {origin}/api/events?include=metric,profile"
              f" and /api/profiles with the header 'Authorization: Klaviyo-API-Key {EMULATOR_KEY}' (revision 2026-07-15)")
        stop = threading.Event()
        if journal is not None:
            threading.Thread(target=print_client_posts, args=(journal, stop), daemon=True).start()
        print("Ctrl-C stops.", flush=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop is a Ctrl-C too
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop.set()
            server.server_close()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def print_client_posts(journal: Path, stop: threading.Event) -> None:
    """Until ``stop`` is set: one line per ``/client/*`` request the emulator journals, as it arrives."""
    offset = journal.stat().st_size if journal.exists() else 0
    while not stop.wait(0.3):
        if not journal.exists():
            continue
        with journal.open("rb") as file:
            file.seek(offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next round
        offset += len(complete)
        for line in complete.decode("utf-8").split("\n"):
            entry = json.loads(line) if line.strip() else {}
            if entry.get("method") == "POST" and str(entry.get("path", "")).startswith("/client/"):
                print(f"browser  {entry['path']:<17} {entry.get('status')}  {_what(entry.get('body'))}", flush=True)


def _what(body: Any) -> str:
    """An event's metric, or a profile's e-mail and properties."""
    attributes = ((body or {}).get("data") or {}).get("attributes") or {}
    metric = ((attributes.get("metric") or {}).get("data") or {}).get("attributes", {}).get("name")
    if metric:
        return str(metric)
    properties = attributes.get("properties")
    return " ".join(filter(None, [attributes.get("email"), json.dumps(properties, ensure_ascii=False) if properties else ""]))

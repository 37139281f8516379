"""The demo store's five pages for one customer, served so a person (or a test's browser) can open them.

``kl-sync onsite serve`` runs :class:`DemoSite` over the demo store: each page is a Jinja2 template
(``templates/demo/``) that includes the store's snippets through the macros of ``klaviyo.html``,
exactly as a store's own templates would, with the loader pointed at a Klaviyo emulator instead of
``static.klaviyo.com``. Opening a page runs the emulator's ``klaviyo.js``, which posts to its
``/client/*`` operations: the events and profile updates arrive as they would at Klaviyo.

:func:`page_calls` is the same page as data, the calls its snippets make; :func:`browser_requests`
of those is what the page's script sends (the test compares the two in Chromium).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from jinja2 import Environment, select_autoescape
from sqlalchemy import Engine, select

from kl_sync.onsite.boxes import box_from_log, chosen_box, read_box_catalog
from kl_sync.onsite.pages import PageSnippets, install
from kl_sync.onsite.render import render_js
from kl_sync.onsite.snippets import BoxProduct, Snippet
from kl_sync.normalize import clean_name, normalize_email
from kl_sync.store.contract import customers, system_log


@dataclass(frozen=True)
class CustomerFacts:
    """What the store's pages print for one customer (store times naive, in the store's zone)."""

    id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    status: str
    schedule: str | None
    signup_date: dt.datetime | None
    has_filled_out_profile: bool
    #: The box step 1 showed (the log row's, else the customer's, else one from the catalog).
    box: BoxProduct | None
    #: When the store recorded the cancellation: the ``cancelled`` log row, else the status change.
    cancelled_at: dt.datetime | None


def read_customer(store_engine: Engine, customer_id: int, *, site_url: str) -> CustomerFacts | None:
    """One customer's facts, or None when the store has no such customer."""
    with store_engine.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.id == customer_id)).first()
        if row is None:
            return None
        log = conn.execute(
            select(system_log.c.type, system_log.c.created_at, system_log.c.data)
            .where(system_log.c.customer_id == customer_id, system_log.c.type.in_(("started.signup", "cancelled")))
            .order_by(system_log.c.id)
        ).all()
    signup_data = next((entry.data for entry in log if entry.type == "started.signup"), None)
    cancelled = [entry.created_at for entry in log if entry.type == "cancelled"]
    catalog = read_box_catalog(store_engine, site_url=site_url)
    box = chosen_box(box_from_log(signup_data, site_url), row.box, catalog, random.Random(customer_id))
    return CustomerFacts(
        id=row.id,
        email=normalize_email(row.email),
        first_name=clean_name(row.first_name),
        last_name=clean_name(row.last_name),
        status=row.status,
        schedule=row.schedule,
        signup_date=row.signup_date,
        has_filled_out_profile=bool(row.has_filled_out_profile),
        box=box,
        cancelled_at=(cancelled[-1] if cancelled else row.updated_at) if row.status == "Stopped" else None,
    )


def first_customer_with_every_page(store_engine: Engine, *, site_url: str) -> CustomerFacts | None:
    """The lowest-id customer for whom all five pages apply (an e-mail, sign-up done, cancelled)."""
    query = (
        select(customers.c.id)
        .where(customers.c.status == "Stopped", customers.c.signup_date.is_not(None), customers.c.schedule.is_not(None))
        .order_by(customers.c.id)
    )
    with store_engine.connect() as conn:
        ids = list(conn.execute(query).scalars())
    for customer_id in ids:
        facts = read_customer(store_engine, customer_id, site_url=site_url)
        if facts is not None and all(page.applies(facts) for page in PAGES):
            return facts
    return None


# --- the five pages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPage:
    path: str
    title: str
    #: What the page's snippets send, for the page itself and the README.
    sends: str
    #: Its own calls after the layout's identify: (customer, snippets, the moment it is served) -> calls.
    own_calls: Callable[[CustomerFacts, PageSnippets, dt.datetime], Snippet]
    applies: Callable[[CustomerFacts], bool]
    #: False for a page an anonymous visitor sees (the layout identifies nobody).
    logged_in: bool = True

    @property
    def template(self) -> str:
        return f"demo/{self.path.strip('/') or 'home'}.html"


def _has_email(facts: CustomerFacts) -> bool:
    return facts.email is not None


PAGES: tuple[DemoPage, ...] = (
    DemoPage("/", "Every page (logged in)", "identify: email, first_name, last_name",
             lambda c, s, at: (), _has_email),
    DemoPage("/sign-up", "Sign-up, after step 1", "identify, then track Started Checkout (the chosen box)",
             lambda c, s, at: s.started_checkout_calls(c.id, c.box, at), _has_email),
    DemoPage("/first-time", "First-time page (sign-up complete)",
             "identify, identify Schedule / SignUpDate / Status Active / HasFilledOutProfile, track Completed Signup",
             lambda c, s, at: s.completed_signup_calls(c.schedule, c.signup_date, c.has_filled_out_profile),
             lambda c: _has_email(c) and c.schedule is not None and c.signup_date is not None),
    DemoPage("/cancelled", "Cancellation confirmation",
             "identify, identify Status Stopped, track Cancelled Account (Cancellation Date)",
             lambda c, s, at: s.cancelled_account_calls(c.cancelled_at),
             lambda c: _has_email(c) and c.cancelled_at is not None),
    DemoPage("/contact-thanks", "Contact form thank-you (not logged in)",
             "identify with the e-mail and names the form gave",
             lambda c, s, at: s.identify_calls(c.email, c.first_name, c.last_name), _has_email, logged_in=False),
)
PAGES_BY_PATH = {page.path: page for page in PAGES}


def page_calls(page: DemoPage, facts: CustomerFacts, snippets: PageSnippets, at: dt.datetime) -> Snippet:
    """Every call the page makes, in order: the layout's identify (when logged in), then its own."""
    layout = snippets.identify_calls(facts.email, facts.first_name, facts.last_name) if page.logged_in else ()
    return layout + page.own_calls(facts, snippets, at)


class DemoSite:
    """Renders the five pages of one customer, their loader pointed at ``klaviyo_origin``."""

    def __init__(self, facts: CustomerFacts, snippets: PageSnippets, *, public_key: str, klaviyo_origin: str):
        self.facts = facts
        self.snippets = snippets
        self.public_key = public_key
        self.klaviyo_origin = klaviyo_origin.rstrip("/")
        self.env = install(Environment(autoescape=select_autoescape(default=True), trim_blocks=True), snippets)

    def pages(self) -> list[DemoPage]:
        return [page for page in PAGES if page.applies(self.facts)]

    def render(self, path: str, at: dt.datetime | None = None) -> tuple[int, str]:
        """(HTTP status, HTML) of the page at ``path``, served at ``at`` (default now)."""
        page = PAGES_BY_PATH.get(path.rstrip("/") or "/")
        if page is None or not page.applies(self.facts):
            served = ", ".join(p.path for p in self.pages())
            return 404, f"<!doctype html><title>Not found</title><p>Pages for this customer: {served}</p>"
        at = at or self.snippets.now()
        html = self.env.get_template(page.template).render(
            page=page,
            pages=self.pages(),
            customer=self.facts,
            logged_in=page.logged_in,
            at=at,
            public_key=self.public_key,
            klaviyo_origin=self.klaviyo_origin,
            calls=render_js(page_calls(page, self.facts, self.snippets, at)),
        )
        return 200, html


class _Handler(BaseHTTPRequestHandler):
    site: DemoSite

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, html = self.site.render(urlsplit(self.path).path)
        body = html.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the emulator's journal shows what the pages sent


def make_server(site: DemoSite, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``site`` (port 0: any free one; ``server.server_address`` says which)."""
    handler = type("DemoSiteHandler", (_Handler,), {"site": site})
    return ThreadingHTTPServer((host, port), handler)


@contextmanager
def running_site(site: DemoSite, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``site`` on a background thread; yields its base URL."""
    server = make_server(site, host, port)
    thread = threading.Thread(target=server.serve_forever, name="kl-sync-demo-site", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

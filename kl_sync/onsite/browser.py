"""Simulated browser traffic for the demo: which of the store's pages its customers' browsers ran,
when, and what their ``klaviyo.js`` sent.

:func:`plan_browser_requests` reads the store and decides, per customer and deterministically (the
same seed always gives the same plan, whatever the row order), which page visits happened:

* every sign-up start (``customers.created_at`` is when step 1 was done) loads the sign-up page,
  which tracks **Started Checkout**;
* every completed sign-up loads the 'first-time' page (**Completed Signup**);
* every cancellation (a Stopped customer; the ``cancelled`` log row's time, else ``updated_at``,
  which the store sets when the status changed) loads the confirmation (**Cancelled Account**).

Most of these are also in the server's log, so they are twins of a server event. Some the server log
missed (the store's log writer drops a few percent), so they are browser-only; and a share of
browsers never ran the snippet (ad blockers, a closed tab), so those actions are server-only. The
browser fires seconds to minutes after the store recorded the action: the page loads after the
form was posted. Each visit is a page of :mod:`kl_sync.onsite.demo_site` (the calls its
snippets make) turned into the requests ``klaviyo.js`` sends for them
(:func:`kl_sync.onsite.snippets.browser_requests`), which is what the demo posts: the same payloads
the real pages send, as ``tests/onsite/test_in_chromium.py`` checks in a browser.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from kl_sync.klaviyo.batches import ItemOutcome
from kl_sync.klaviyo.client_events import send_client_events, send_client_requests
from kl_sync.normalize import clean_name, normalize_email
from kl_sync.onsite.boxes import box_from_log, chosen_box, read_box_catalog
from kl_sync.onsite.demo_site import PAGES_BY_PATH, CustomerFacts, page_calls
from kl_sync.onsite.pages import PageSnippets
from kl_sync.onsite.snippets import CREATE_CLIENT_EVENT, BrowserRequest, browser_requests
from kl_sync.store.contract import customers, system_log

#: Share of the actions the server logged that a browser also tracked.
BROWSER_TRACKED_SHARE = 0.88
#: Browser delay after the store's time: log-normal around this median, capped.
MEDIAN_DELAY_SECONDS = 20.0
DELAY_SIGMA = 1.1
MAX_DELAY_SECONDS = 30 * 60


def _delay(rng: random.Random) -> dt.timedelta:
    seconds = rng.lognormvariate(math.log(MEDIAN_DELAY_SECONDS), DELAY_SIGMA)
    return dt.timedelta(seconds=max(1, min(MAX_DELAY_SECONDS, round(seconds))))


def _browser_time(store_time: dt.datetime, zone: ZoneInfo, rng: random.Random) -> dt.datetime:
    """When the page after a store action ran: the store's naive local time plus the page delay
    (added in UTC, so a DST change in between cannot produce a wall time that never existed)."""
    return (store_time.replace(tzinfo=zone).astimezone(dt.UTC) + _delay(rng)).astimezone(zone)


def _fires(rng: random.Random, server_logged: bool, browser_share: float) -> bool:
    # Without a server row the action is only known because the browser saw it (the store's own
    # generator drops those rows); with one, the browser may still have been blocked.
    return not server_logged or rng.random() < browser_share


def _read_history(
    store_engine: Engine,
) -> tuple[dict[int, tuple[dt.datetime, str | None]], dict[int, dt.datetime], list[Any]]:
    """Per customer: the first sign-up start logged (time, data), the last cancellation logged, and
    every customer's row, in id order."""
    log_query = select(system_log.c.customer_id, system_log.c.type, system_log.c.created_at, system_log.c.data).where(
        system_log.c.type.in_(("started.signup", "cancelled")), system_log.c.customer_id.is_not(None)
    ).order_by(system_log.c.id)
    signup_log: dict[int, tuple[dt.datetime, str | None]] = {}
    cancel_log: dict[int, dt.datetime] = {}
    customer_query = select(
        customers.c.id, customers.c.email, customers.c.first_name, customers.c.last_name,
        customers.c.status, customers.c.box, customers.c.created_at, customers.c.updated_at,
        customers.c.schedule, customers.c.signup_date, customers.c.has_filled_out_profile,
    ).order_by(customers.c.id)
    with store_engine.connect() as conn:
        for row in conn.execute(log_query):
            if row.type == "started.signup":
                signup_log.setdefault(row.customer_id, (row.created_at, row.data))
            else:
                cancel_log[row.customer_id] = row.created_at
        customer_rows = list(conn.execute(customer_query))
    return signup_log, cancel_log, customer_rows


def plan_browser_requests(
    store_engine: Engine,
    *,
    seed: int,
    tz: ZoneInfo | str,
    site_url: str = "https://shop.example.com",
    browser_share: float = BROWSER_TRACKED_SHARE,
) -> list[BrowserRequest]:
    """What the browsers of every customer with a usable e-mail sent, ordered by time: per page
    visit, the requests its ``klaviyo.js`` sends for the page's calls (the same pages the demo site
    serves, :data:`kl_sync.onsite.demo_site.PAGES`): the layout's identify and the page's own
    identify go to ``/client/profiles``, its track to ``/client/events``.

    ``tz`` is the store's time zone (its timestamps are naive local times).
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    snippets = PageSnippets(zone, site_url)
    catalog = read_box_catalog(store_engine, site_url=site_url)
    signup_log, cancel_log, customer_rows = _read_history(store_engine)

    planned: list[tuple[dt.datetime, int, BrowserRequest]] = []

    def visit(path: str, facts: CustomerFacts, at: dt.datetime) -> None:
        calls = page_calls(PAGES_BY_PATH[path], facts, snippets, at)
        planned.extend((at, facts.id, request) for request in browser_requests(calls, at=at))

    for customer in customer_rows:
        email = normalize_email(customer.email)
        if email is None:
            continue  # klaviyo.identify needs an e-mail; such a browser is anonymous to Klaviyo
        # One generator per customer, seeded by (seed, id): the plan does not depend on row order.
        rng = random.Random(f"{seed}:{customer.id}")
        facts = CustomerFacts(
            customer.id, email, clean_name(customer.first_name), clean_name(customer.last_name), customer.status,
            customer.schedule, customer.signup_date, bool(customer.has_filled_out_profile), box=None, cancelled_at=None,
        )

        signup_row = signup_log.get(customer.id)
        if _fires(rng, signup_row is not None, browser_share):
            logged_box = box_from_log(signup_row[1], site_url) if signup_row else None
            box = chosen_box(logged_box, customer.box, catalog, rng)
            visit("/sign-up", replace(facts, box=box), _browser_time(customer.created_at, zone, rng))

        if customer.signup_date is not None and customer.schedule:
            # The 'first-time' page after the last sign-up step: browser-only (the log has no twin).
            # Its own generator, so adding this event left the other events' plan unchanged.
            visit("/first-time", facts,
                  _browser_time(customer.signup_date, zone, random.Random(f"{seed}:{customer.id}:completed")))

        if customer.status == "Stopped":
            cancelled_at = cancel_log.get(customer.id, customer.updated_at)
            if _fires(rng, customer.id in cancel_log, browser_share):
                # The page prints the cancellation the store recorded; the browser tracks it when it loads.
                visit("/cancelled", replace(facts, cancelled_at=cancelled_at), _browser_time(cancelled_at, zone, rng))

    planned.sort(key=lambda item: (item[0], item[1]))
    return [request for _, _, request in planned]


def plan_browser_events(store_engine: Engine, **plan: Any) -> list[dict[str, Any]]:
    """The events among :func:`plan_browser_requests` (which takes the same keywords: ``seed``,
    ``tz``, ``site_url``, ``browser_share``), as the duplicate analysis sees them: ``/client/events``
    payloads, ordered by time."""
    return [r.payload for r in plan_browser_requests(store_engine, **plan) if r.operation_id == CREATE_CLIENT_EVENT]


def post_browser_requests(base_url: str, public_key: str, requests: Sequence[BrowserRequest]) -> list[ItemOutcome]:
    """Send planned browser requests to Klaviyo's public ``/client/*`` writes, one request each as
    browsers do; one outcome per request, in order.

    Post them before the server-side sync runs: a browser's identify properties (Status) land on the
    profile, and the sync then leaves the profile at the store's current values.
    """
    return send_client_requests(base_url, public_key, requests)


def post_browser_events(base_url: str, public_key: str, events: Sequence[dict[str, Any]]) -> list[ItemOutcome]:
    """Planned browser events alone (:func:`plan_browser_events`) to ``POST /client/events``."""
    return send_client_events(base_url, public_key, events)  # type: ignore[arg-type]

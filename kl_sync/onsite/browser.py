"""Simulated browser traffic for the demo: which onsite events the store's pages fired, and when.

:func:`plan_browser_events` reads the store and decides, per customer and deterministically (the same
seed always gives the same plan, whatever the row order), which browser events happened:

* every sign-up start (``customers.created_at`` is when step 1 was done) fires **Started Checkout**;
* every cancellation (a Stopped customer; the ``cancelled`` log row's time, else ``updated_at``,
  which the store sets when the status changed) fires **Cancelled Account**.

Most of these are also in the server's log, so they are twins of a server event. Some the server log
missed (the store's log writer drops a few percent), so they are browser-only; and a share of
browsers never ran the snippet (ad blockers, a closed tab), so those actions are server-only. The
browser fires seconds to minutes after the store recorded the action: the page loads after the
form was posted. The payloads come from :mod:`kl_sync.onsite.snippets`, as the real pages' do.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from kl_sync.klaviyo.batches import ItemOutcome
from kl_sync.normalize import clean_name, normalize_email
from kl_sync.klaviyo.client_events import send_client_events
from kl_sync.onsite.snippets import (
    BOX_CATEGORY,
    BoxProduct,
    Snippet,
    build_cancelled_account,
    build_completed_signup,
    build_client_events,
    build_identify,
    build_started_checkout,
)
from kl_sync.store.contract import customers, order_items, system_log

#: Share of the actions the server logged that a browser also tracked.
BROWSER_TRACKED_SHARE = 0.88
#: Browser delay after the store's time: log-normal around this median, capped.
MEDIAN_DELAY_SECONDS = 20.0
DELAY_SIGMA = 1.1
MAX_DELAY_SECONDS = 30 * 60


def box_from_log(data: str | None, site_url: str) -> BoxProduct | None:
    """The box a ``started.signup`` log row names, if its JSON is readable."""
    try:
        parsed = json.loads(data) if data else None
        if not isinstance(parsed, dict) or not parsed.get("box"):
            return None
        price = Decimal(str(parsed.get("price", "0")))
    except (ValueError, InvalidOperation):
        return None
    name = str(parsed["box"])
    return BoxProduct(str(parsed.get("product_id", "")), name, price, _product_url(site_url, name))


def _product_url(site_url: str, name: str) -> str:
    slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "x"
    return f"{site_url.rstrip('/')}/shop/item/{slug}"


def read_box_catalog(store_engine: Engine, *, site_url: str) -> dict[str, BoxProduct]:
    """Boxes by name, from order lines in the box category (their latest price and links)."""
    query = (
        select(
            order_items.c.product_id,
            order_items.c.product_name,
            order_items.c.item_price,
            order_items.c.product_url,
            order_items.c.image_url,
            order_items.c.categories,
        )
        .where(order_items.c.categories.like(f"%{BOX_CATEGORY}%"))
        .order_by(order_items.c.id)
    )
    catalog: dict[str, BoxProduct] = {}
    with store_engine.connect() as conn:
        for row in conn.execute(query):
            categories = [c.strip() for c in (row.categories or "").split(",")]
            if BOX_CATEGORY not in categories:
                continue
            catalog[row.product_name] = BoxProduct(
                str(row.product_id),
                row.product_name,
                Decimal(str(row.item_price)),
                row.product_url or _product_url(site_url, row.product_name),
                row.image_url or "",
            )
    return catalog


def _delay(rng: random.Random) -> dt.timedelta:
    seconds = rng.lognormvariate(math.log(MEDIAN_DELAY_SECONDS), DELAY_SIGMA)
    return dt.timedelta(seconds=max(1, min(MAX_DELAY_SECONDS, round(seconds))))


def _browser_time(store_time: dt.datetime, zone: ZoneInfo, rng: random.Random) -> dt.datetime:
    """When the page after a store action ran: the store's naive local time plus the page delay
    (added in UTC, so a DST change in between cannot produce a wall time that never existed)."""
    return (store_time.replace(tzinfo=zone).astimezone(dt.UTC) + _delay(rng)).astimezone(zone)


def chosen_box(
    logged: BoxProduct | None, customer_box: str | None, catalog: dict[str, BoxProduct], rng: random.Random
) -> BoxProduct | None:
    """The box step 1 showed: the one the log row names, else the customer's, else (the store kept no
    trace of it, but the browser still showed one) a catalog box picked by the customer's generator."""
    if logged is not None:
        return catalog.get(logged.name, logged)
    if customer_box in catalog:
        return catalog[customer_box]
    return catalog[rng.choice(sorted(catalog))] if catalog else None


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


def plan_browser_events(
    store_engine: Engine,
    *,
    seed: int,
    tz: ZoneInfo | str,
    site_url: str = "https://shop.example.com",
    browser_share: float = BROWSER_TRACKED_SHARE,
) -> list[dict[str, Any]]:
    """The browser events of every customer with a usable e-mail, ordered by time.

    Each event is a ``/client/events`` payload as :func:`kl_sync.onsite.snippets.build_client_events`
    builds it. ``tz`` is the store's time zone (its timestamps are naive local times).
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    catalog = read_box_catalog(store_engine, site_url=site_url)
    signup_log, cancel_log, customer_rows = _read_history(store_engine)
    planned: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    for customer in customer_rows:
        email = normalize_email(customer.email)
        if email is None:
            continue  # klaviyo.identify needs an e-mail; such a browser is anonymous to Klaviyo
        # One generator per customer, seeded by (seed, id): the plan does not depend on row order.
        rng = random.Random(f"{seed}:{customer.id}")
        identify = build_identify(email, clean_name(customer.first_name), clean_name(customer.last_name))

        signup_row = signup_log.get(customer.id)
        if _fires(rng, signup_row is not None, browser_share):
            logged_box = box_from_log(signup_row[1], site_url) if signup_row else None
            box = chosen_box(logged_box, customer.box, catalog, rng)
            at = _browser_time(customer.created_at, zone, rng)
            snippet: Snippet = identify + build_started_checkout(customer.id, box, at=at, site_url=site_url)
            planned.extend((at, customer.id, event) for event in build_client_events(snippet, at=at))

        if customer.signup_date is not None and customer.schedule:
            # The 'first-time' page after the last sign-up step: browser-only (the log has no twin).
            # Its own generator, so adding this event left the other events' plan unchanged.
            at = _browser_time(customer.signup_date, zone, random.Random(f"{seed}:{customer.id}:completed"))
            snippet = identify + build_completed_signup(
                customer.schedule, customer.signup_date.replace(tzinfo=zone), customer.has_filled_out_profile
            )
            planned.extend((at, customer.id, event) for event in build_client_events(snippet, at=at))

        if customer.status == "Stopped":
            cancelled_at = cancel_log.get(customer.id, customer.updated_at)
            if _fires(rng, customer.id in cancel_log, browser_share):
                at = _browser_time(cancelled_at, zone, rng)
                # The page prints the cancellation the store recorded; the browser tracks it when it loads.
                snippet = identify + build_cancelled_account(cancelled_at.replace(tzinfo=zone))
                planned.extend((at, customer.id, event) for event in build_client_events(snippet, at=at))

    planned.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in planned]


def post_browser_events(base_url: str, public_key: str, events: Sequence[dict[str, Any]]) -> list[ItemOutcome]:
    """Send planned browser events to Klaviyo's public ``POST /client/events``, one request each as
    browsers do; one outcome per event, in order.

    Post them before the server-side sync runs: a browser event's identify properties (Status) land
    on the profile, and the sync then leaves the profile at the store's current values.
    """
    return send_client_events(base_url, public_key, events)  # type: ignore[arg-type]

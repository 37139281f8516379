"""What each of the store's pages includes: per-page HTML snippets, and the same as Jinja2 macros.

======================================  ===============================================================
page                                    what it includes (after the layout's loader)
======================================  ===============================================================
every page, the layout's ``<head>``     :meth:`PageSnippets.loader` once, then, when the visitor is
                                        known (logged in, or past a form that gave an e-mail),
                                        :meth:`~PageSnippets.identify` with their e-mail and names
sign-up, after step 1                   :meth:`~PageSnippets.started_checkout` (the chosen box)
'first-time' page (sign-up complete)    :meth:`~PageSnippets.completed_signup`: identify Schedule,
                                        SignUpDate, Status Active, HasFilledOutProfile; track
                                        Completed Signup
cancellation confirmation               :meth:`~PageSnippets.cancelled_account`: identify Status
                                        Stopped; track Cancelled Account with its Cancellation Date
contact form thank-you                  :meth:`~PageSnippets.contact_form_thanks`: identify with the
                                        e-mail and names the form gave
======================================  ===============================================================

Each method returns one ``<script>`` element as :class:`markupsafe.Markup` (empty when there is
nothing to send, e.g. no usable e-mail), so it drops into any template engine; every value in it is
escaped for an inline script (see :mod:`kl_sync.onsite.render`). The calls and their properties come
from :mod:`kl_sync.onsite.snippets`; each ``*_calls`` method gives them as data (what the demo's
simulated browsers send). Store times are naive local times in the store's zone, as in its database.

In Jinja2, :func:`install` adds the macros (``templates/klaviyo.html``) to an environment::

    install(env, PageSnippets(ZoneInfo("America/New_York"), "https://shop.example.com"))
    {% import "klaviyo.html" as klaviyo %}
    {{ klaviyo.loader("PUBLIC_KEY") }}
    {{ klaviyo.identify(customer.email, customer.first_name, customer.last_name) }}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from markupsafe import Markup

from kl_sync.onsite.render import KLAVIYO_ONSITE_ORIGIN, render_loader, render_script
from kl_sync.onsite.snippets import (
    SAME_EVENT_ID,
    BoxProduct,
    Snippet,
    build_cancelled_account,
    build_completed_signup,
    build_identify,
    build_started_checkout,
)
from kl_sync.normalize import clean_name, normalize_email

#: The macros' folder: ``klaviyo.html`` (the store's) and ``demo/`` (the demo site's pages).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_box(box: BoxProduct | Mapping[str, Any] | None) -> BoxProduct | None:
    """A box as the sign-up page has it: a :class:`BoxProduct`, or a mapping with ``product_id``,
    ``name``, ``price`` and optionally ``product_url`` / ``image_url`` (a template's dict)."""
    if box is None or isinstance(box, BoxProduct):
        return box
    return BoxProduct(
        str(box["product_id"]),
        str(box["name"]),
        Decimal(str(box["price"])),
        str(box.get("product_url") or ""),
        str(box.get("image_url") or ""),
    )


@dataclass(frozen=True)
class PageSnippets:
    """The store's page snippets for one shop: its time zone and site, and a clock for "now"."""

    timezone: ZoneInfo
    site_url: str
    now: Callable[[], dt.datetime] = field(default=_utc_now, compare=False)

    def store_time(self, value: dt.datetime | str | None) -> dt.datetime:
        """A store time made aware (naive ones are in the store's zone); None is now."""
        if value is None:
            return self.now()
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.timezone)

    # --- the calls, as data ----------------------------------------------------------------------

    def identify_calls(self, email: str | None, first_name: str | None = None, last_name: str | None = None) -> Snippet:
        # The e-mail as the server side sends it (trimmed, lower-cased), so both name one profile.
        normalized = normalize_email(email)
        return build_identify(normalized, clean_name(first_name), clean_name(last_name)) if normalized else ()

    def started_checkout_calls(
        self,
        customer_id: int,
        box: BoxProduct | Mapping[str, Any] | None = None,
        at: dt.datetime | str | None = None,
        log_id: int | None = None,
    ) -> Snippet:
        return build_started_checkout(
            customer_id, as_box(box), at=self.store_time(at), site_url=self.site_url, event_id=_same_event_id(log_id)
        )

    def completed_signup_calls(
        self, schedule: str, signup_date: dt.datetime | str, has_filled_out_profile: bool
    ) -> Snippet:
        return build_completed_signup(schedule, self.store_time(signup_date), has_filled_out_profile)

    def cancelled_account_calls(self, cancelled_at: dt.datetime | str | None = None, log_id: int | None = None) -> Snippet:
        return build_cancelled_account(self.store_time(cancelled_at), _same_event_id(log_id))

    # --- the same, as HTML -------------------------------------------------------------------------

    def loader(self, public_key: str, origin: str = KLAVIYO_ONSITE_ORIGIN) -> Markup:
        """Once per page, in the layout's ``<head>``: Klaviyo's script and its queueing stub."""
        return Markup(render_loader(public_key, origin))

    def identify(self, email: str | None, first_name: str | None = None, last_name: str | None = None) -> Markup:
        """Every page, once the visitor is known; nothing for a missing or malformed e-mail."""
        return _script(self.identify_calls(email, first_name, last_name))

    def started_checkout(
        self,
        customer_id: int,
        box: BoxProduct | Mapping[str, Any] | None = None,
        at: dt.datetime | str | None = None,
        log_id: int | None = None,
    ) -> Markup:
        """The sign-up page after step 1 (box chosen; name, e-mail and address entered). ``log_id``:
        the ``system_log`` row step 1 wrote, to name the event as the server does (``log:<id>``)."""
        return _script(self.started_checkout_calls(customer_id, box, at, log_id))

    def completed_signup(self, schedule: str, signup_date: dt.datetime | str, has_filled_out_profile: bool) -> Markup:
        """The 'first-time' page, after the last sign-up step."""
        return _script(self.completed_signup_calls(schedule, signup_date, has_filled_out_profile))

    def cancelled_account(self, cancelled_at: dt.datetime | str | None = None, log_id: int | None = None) -> Markup:
        """The cancellation confirmation; ``cancelled_at`` is when the store recorded it (default now),
        ``log_id`` its ``cancelled`` log row (as for :meth:`started_checkout`)."""
        return _script(self.cancelled_account_calls(cancelled_at, log_id))

    def contact_form_thanks(self, email: str | None, first_name: str | None = None, last_name: str | None = None) -> Markup:
        """The contact form's thank-you page: identify with what the form gave."""
        return self.identify(email, first_name, last_name)


def _same_event_id(log_id: int | None) -> str | None:
    return SAME_EVENT_ID.format(log_id=int(log_id)) if log_id is not None else None


def _script(snippet: Snippet) -> Markup:
    return Markup(render_script(snippet)) if snippet else Markup("")


def install(env: Environment, snippets: PageSnippets) -> Environment:
    """Make ``{% import "klaviyo.html" as klaviyo %}`` work in ``env``: the macros' folder is added
    after the store's own templates, and the macros call ``snippets`` (the global ``kl_onsite``)."""
    ours = FileSystemLoader(TEMPLATES_DIR)
    env.loader = ChoiceLoader([env.loader, ours]) if env.loader is not None else ours
    env.globals["kl_onsite"] = snippets
    return env

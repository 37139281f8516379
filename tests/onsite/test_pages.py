"""The page snippets as a store's templates include them: Jinja2 macros that render exactly the
Python helpers' HTML, nothing for an unknown visitor, and the demo site's five pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from jinja2 import DictLoader, Environment, select_autoescape

from kl_sync.onsite.demo_site import PAGES, CustomerFacts, DemoSite, page_calls
from kl_sync.onsite.pages import PageSnippets, install
from kl_sync.onsite.render import render_script
from kl_sync.onsite.snippets import SAME_EVENT_ID, BoxProduct, build_identify, build_started_checkout
from kl_sync.steps import parse

TZ = ZoneInfo("America/New_York")
NOW = dt.datetime(2026, 3, 2, 15, 4, 5, tzinfo=dt.UTC)
SNIPPETS = PageSnippets(TZ, "https://shop.example", now=lambda: NOW)
BOX = BoxProduct("705", "Small </script> Box", Decimal("47.95"), "https://shop.example/shop/item/small")

STORE_TEMPLATE = """{% import "klaviyo.html" as klaviyo %}
{{- klaviyo.identify(customer.email, customer.first_name, customer.last_name) -}}
{{- klaviyo.started_checkout(customer.id, box) -}}
{{- klaviyo.completed_signup("Weekly", customer.signup_date, true) -}}
{{- klaviyo.cancelled_account(customer.cancelled_at) -}}
{{- klaviyo.contact_form_thanks(customer.email) -}}"""


def _store_env() -> Environment:
    # A store's own environment, with its own loader: install adds ours after it.
    env = Environment(loader=DictLoader({"page.html": STORE_TEMPLATE}), autoescape=select_autoescape(default=True))
    return install(env, SNIPPETS)


def test_the_macros_render_what_the_helpers_render_with_store_times_in_the_stores_zone():
    customer = {"id": 42, "email": " Ana@Example.COM", "first_name": "Ana  <b>", "last_name": None,
                "signup_date": dt.datetime(2026, 2, 2, 12, 35, 32), "cancelled_at": "2026-02-27 12:40:28"}
    html = _store_env().get_template("page.html").render(customer=customer, box=BOX)

    assert html == "".join([
        SNIPPETS.identify(" Ana@Example.COM", "Ana  <b>"),
        SNIPPETS.started_checkout(42, BOX),
        SNIPPETS.completed_signup("Weekly", dt.datetime(2026, 2, 2, 12, 35, 32), True),
        SNIPPETS.cancelled_account("2026-02-27 12:40:28"),
        SNIPPETS.contact_form_thanks(" Ana@Example.COM"),
    ])
    # The e-mail and names as the server side sends them; the box from the template; "now" for the event id.
    assert SNIPPETS.identify(" Ana@Example.COM", "Ana  <b>") == render_script(build_identify("ana@example.com", "Ana <b>"))
    assert SNIPPETS.started_checkout(42, BOX) == render_script(
        build_started_checkout(42, BOX, at=NOW, site_url="https://shop.example"))
    assert '"SignUpDate": "2026-02-02T12:35:32-05:00"' in html
    assert '"Cancellation Date": "2026-02-27T12:40:28-05:00"' in html
    # The names' "</script>" and "<b>" stay inside their strings: the only tags are the elements' own.
    assert html.count("<") == html.count('<script type="text/javascript">') + html.count("</script>") == 10


def test_an_unknown_visitor_gets_no_identify_and_a_template_dict_is_a_box():
    assert SNIPPETS.identify(None) == SNIPPETS.identify("not an e-mail") == ""
    from_dict = SNIPPETS.started_checkout_calls(7, {"product_id": 705, "name": BOX.name, "price": "47.95",
                                                    "product_url": BOX.product_url})
    assert from_dict == SNIPPETS.started_checkout_calls(7, BOX)


def test_the_demo_site_serves_the_pages_that_apply_with_the_loader_at_the_emulator():
    facts = CustomerFacts(42, "ana@example.com", "Ana", "Silva", "Active", "Weekly", dt.datetime(2026, 2, 2, 12, 35),
                          False, BOX, None)
    site = DemoSite(facts, SNIPPETS, public_key="PUB", klaviyo_origin="http://127.0.0.1:8765/")

    assert [page.path for page in site.pages()] == ["/", "/sign-up", "/first-time", "/contact-thanks"]
    status, html = site.render("/sign-up")
    assert status == 200
    assert '<script async type="text/javascript" src="http://127.0.0.1:8765/onsite/js/PUB/klaviyo.js">' in html
    # The layout's identify, then the page's own snippet: the calls page_calls gives, in order.
    identify, track = page_calls(PAGES[1], facts, SNIPPETS, NOW)
    assert 0 < html.index(render_script((identify,))) < html.index(render_script((track,)))
    assert site.render("/cancelled")[0] == 404  # not cancelled: the store would never show it
    assert site.render("/nowhere")[0] == 404
    # The contact form's thank-you is an anonymous visitor's page: only the form's identify.
    contact = next(page for page in PAGES if page.path == "/contact-thanks")
    assert page_calls(contact, facts, SNIPPETS, NOW) == build_identify("ana@example.com", "Ana", "Silva")


def test_a_page_naming_its_event_as_the_server_does_leaves_one_event_of_the_twin_pair(emulator):
    from kl_sync.klaviyo.client import KlaviyoClient
    from kl_sync.klaviyo.client_events import send_client_requests
    from kl_sync.klaviyo.events import send_events
    from kl_sync.onsite.snippets import browser_requests

    # The server's event for log row 17, under the browser's metric name (KL_SYNC_LOG_METRICS).
    server = {"metric": "Started Checkout", "time": "2026-03-02T10:04:00-05:00", "unique_id": "log:17",
              "properties": {"message": "started sign-up"}, "profile": {"email": "ana@example.com"}}
    with KlaviyoClient(emulator.api_key, emulator.base_url) as client:
        assert [o.status for o in send_events(client, [server])] == ["sent"]
    for log_id in (17, None):  # the page that names it so, then one that keeps the seed's id
        calls = SNIPPETS.identify_calls("ana@example.com") + SNIPPETS.started_checkout_calls(42, BOX, log_id=log_id)
        requests = browser_requests(calls, at=NOW)
        assert requests[-1].payload["unique_id"] == ("log:17" if log_id else f"42_{int(NOW.timestamp())}")
        assert {o.status for o in send_client_requests(emulator.base_url, emulator.public_key, requests)} == {"sent"}

    stored = [(e["unique_id"], e["source"]) for e in emulator.events() if e["metric"] == "Started Checkout"]
    assert stored == [("log:17", "server"), (f"42_{int(NOW.timestamp())}", "client")]
    assert '"$event_id": "log:17"' in SNIPPETS.cancelled_account("2026-02-27 12:40:28", log_id=17)
    assert SAME_EVENT_ID == f"{parse.KEY_PREFIX}:{{log_id}}"  # the parse step's key of a log row

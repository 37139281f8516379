"""The store's pages in a real browser: headless Chromium (Debian's ``chromium``, driven through its
``chromedriver`` over plain WebDriver HTTP) loads each demo page against the emulator, whose
``klaviyo.js`` posts what the page's snippets call; the events and the profile are read back
through ``GET /api/events`` / ``GET /api/profiles`` and checked against the seed's property lists.

Skipped where Chromium is absent, unless ``KL_SYNC_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``), which
makes its absence a failure. ``make chromium`` installs it (apt-get, as root).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import insert

from kl_sync.db import make_engine
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.client_events import build_client_body
from kl_sync.klaviyo.reads import iter_events, iter_profiles
from kl_sync.onsite.demo_site import PAGES, DemoSite, page_calls, read_customer, running_site
from kl_sync.onsite.pages import PageSnippets
from kl_sync.onsite.render import loader_stub, loader_url, render_loader
from kl_sync.onsite.snippets import browser_requests
from kl_sync.store.contract import customers, metadata, order_items, orders, system_log

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# The flags the machine notes give for a headless Chromium that talks to nothing but the test.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
WAIT_SECONDS = 20  # for requests a page sends to arrive: a bound on waiting, never an assertion

TZ = ZoneInfo("America/New_York")
SERVED_AT = dt.datetime(2026, 3, 2, 15, 4, 5, tzinfo=dt.UTC)  # the site's clock: Started Checkout's $event_id
CUSTOMER_ID = 1141260
HOSTILE_FIRST = "</script><script>window.__injected = 1</script>"
HOSTILE_LAST = "O'Brien \"Mc\" \\ <!-- Gee & co"
HOSTILE_BOX = "Only Organic \"Small\" Box </script>\u2028Fruits\u2029 & Veggies"
SIGNED_UP = dt.datetime(2026, 2, 2, 12, 35, 32)
CANCELLED = dt.datetime(2026, 2, 27, 12, 40, 28)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        reason = "Chromium is not installed (`make chromium`: apt-get install chromium chromium-driver)"
        if os.environ.get("KL_SYNC_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}, and KL_SYNC_REQUIRE_CHROMIUM=1 says it must be")
        pytest.skip(reason)
    browser = WebDriver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.close()


class WebDriver:
    """The three WebDriver commands these tests need, sent to a chromedriver this object started."""

    def __init__(self, profile_dir: Path):
        self.process = subprocess.Popen([CHROMEDRIVER, "--port=0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self._port()}"
        options = {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]}
        answer = self._command("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"/session/{answer['sessionId']}"

    def _port(self) -> int:
        # os.read, not readline: a buffered readline may hold the line we wait for where select() cannot see it.
        deadline, seen = time.monotonic() + 30, b""
        while time.monotonic() < deadline and self.process.poll() is None:
            if select.select([self.process.stdout], [], [], 1)[0]:
                seen += os.read(self.process.stdout.fileno(), 65536)
                started = re.search(rb"started successfully on port (\d+)", seen)
                if started:
                    return int(started[1])
        self.process.kill()
        raise RuntimeError(f"chromedriver did not start: {seen.decode('utf-8', 'replace')}")

    def _command(self, method: str, path: str, body: dict | None = None):
        answer = requests.request(method, self.url + path, json=body, timeout=60).json()["value"]
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"WebDriver {path}: {answer['error']}: {answer.get('message', '')[:500]}")
        return answer

    def open(self, url: str) -> None:
        """Navigate and wait for the page's load event."""
        self._command("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str):
        """Run ``script`` in the page and return at once."""
        return self._command("POST", f"{self.session}/execute/sync", {"script": script, "args": []})

    def run_async(self, script: str):
        """Run ``script`` in the page; it finishes by calling ``done(value)``, the value is returned."""
        body = {"script": f"const done = arguments[arguments.length - 1];\n{script}", "args": []}
        return self._command("POST", f"{self.session}/execute/async", body)

    def close(self) -> None:
        try:
            self._command("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(10)


def _planted_store(path: Path):
    engine = make_engine(f"sqlite:///{path}", sqlite_wal=False)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(customers), [{
            "id": CUSTOMER_ID, "email": "  KTest@Example.com ", "first_name": HOSTILE_FIRST, "last_name": HOSTILE_LAST,
            "status": "Stopped", "schedule": "Weekly", "box": HOSTILE_BOX, "signup_date": SIGNED_UP,
            "email_subscribed": True, "has_filled_out_profile": True, "created_at": SIGNED_UP, "updated_at": CANCELLED,
        }])
        conn.execute(insert(orders), [{"id": 1, "customer_id": CUSTOMER_ID, "status": "Completed", "total": 47.95,
                                       "created_at": SIGNED_UP, "updated_at": SIGNED_UP, "delivery_date": None}])
        conn.execute(insert(order_items), [{
            "id": 1, "order_id": 1, "product_id": "705", "product_name": HOSTILE_BOX, "quantity": 1, "item_price": 47.95,
            "product_url": "https://localhost/klcode/shop/item/only-organic-small-box", "image_url": "",
            "categories": "Boxes"}])
        conn.execute(insert(system_log), [
            {"id": 1, "created_at": SIGNED_UP, "customer_id": CUSTOMER_ID, "type": "started.signup", "message": "",
             "data": json.dumps({"box": HOSTILE_BOX, "product_id": "705", "price": "47.95"})},
            {"id": 2, "created_at": CANCELLED, "customer_id": CUSTOMER_ID, "type": "cancelled", "message": "",
             "data": None},
        ])
    return engine


def _client_posts(emulator, since: int) -> list[dict]:
    return [e for e in emulator.journal()[since:] if e["method"] == "POST" and e["path"].startswith("/client/")]


def _wait_for_posts(emulator, since: int, count: int) -> list[dict]:
    deadline = time.monotonic() + WAIT_SECONDS
    while len(posts := _client_posts(emulator, since)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return posts


PATHS = {"create_client_event": "/client/events", "create_client_profile": "/client/profiles"}


def _sorted(requests_: list[tuple]) -> list[tuple]:
    return sorted(requests_, key=lambda item: json.dumps(item, sort_keys=True))


def _without_time(body: dict) -> dict:
    attributes = dict(body["data"]["attributes"])
    attributes.pop("time", None)
    return {**body, "data": {**body["data"], "attributes": attributes}}


def test_each_page_sends_what_its_snippets_call_and_klaviyo_holds_the_seeds_events(chromium, emulator, tmp_path):
    facts = read_customer(_planted_store(tmp_path / "store.db"), CUSTOMER_ID, site_url="https://localhost/klcode")
    snippets = PageSnippets(TZ, "https://localhost/klcode", now=lambda: SERVED_AT)
    site = DemoSite(facts, snippets, public_key=emulator.public_key, klaviyo_origin=emulator.base_url)
    assert [page.path for page in site.pages()] == [page.path for page in PAGES]  # all five apply

    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with running_site(site) as site_url:  # another origin than the emulator's: CORS is exercised
        for page in PAGES:
            expected = browser_requests(page_calls(page, facts, snippets, SERVED_AT), at=SERVED_AT)
            seen = len(emulator.journal())
            chromium.open(site_url + page.path)
            posts = _wait_for_posts(emulator, seen, len(expected))
            # Exactly the requests the demo's simulated browsers build for the same calls (sent at
            # once, so in any order).
            assert _sorted([(p["path"], p["status"], _without_time(p["body"])) for p in posts]) == _sorted([
                (PATHS[r.operation_id], 202, _without_time(build_client_body(r.operation_id, r.payload))) for r in expected
            ]), page.path
            for post in posts:
                assert post["query"] == {"company_id": emulator.public_key} and "authorization" not in post["headers"]
                assert post["headers"]["origin"] == site_url
                if post["path"] == "/client/events":  # stamped by the browser when the page called track
                    assert started <= dt.datetime.fromisoformat(post["body"]["data"]["attributes"]["time"])
        assert chromium.run_async("done(window.__injected === undefined)") is True, "a name broke out of its script"

    client = KlaviyoClient(emulator.api_key, emulator.base_url)
    events = {event["metric"]: event for event in iter_events(client)}
    assert sorted(events) == ["Cancelled Account", "Completed Signup", "Started Checkout"]
    assert {event["email"] for event in events.values()} == {"ktest@example.com"}

    # The seed's Started Checkout, with the box the log row names: names with </script>, quotes,
    # U+2028 and U+2029 arrive as the store wrote them.
    checkout = events["Started Checkout"]
    assert checkout["unique_id"] == f"{CUSTOMER_ID}_{int(SERVED_AT.timestamp())}"
    assert checkout["value"] == 47.95
    assert checkout["properties"] == {
        "ItemNames": [HOSTILE_BOX],
        "CheckoutURL": "https://localhost/klcode/sign-up",
        "Categories": ["Boxes"],
        "Items": [{
            "ProductID": "705", "ProductName": HOSTILE_BOX, "Quantity": 1, "ItemPrice": 47.95, "RowTotal": 47.95,
            "ProductURL": "https://localhost/klcode/shop/item/only-organic-small-box", "ImageURL": "",
            "ProductCategories": ["Boxes"],
        }],
    }
    assert events["Completed Signup"]["properties"] == {"Completed Signup": True}
    assert events["Cancelled Account"]["properties"] == {"Cancellation Date": "2026-02-27T12:40:28-05:00"}

    [profile] = iter_profiles(client, "ktest@example.com")
    assert (profile["first_name"], profile["last_name"]) == (HOSTILE_FIRST, HOSTILE_LAST)
    # The first-time page's identify, then the cancellation's Status.
    assert profile["properties"] == {"Schedule": "Weekly", "SignUpDate": "2026-02-02T12:35:32-05:00",
                                     "Status": "Stopped", "HasFilledOutProfile": True}


# Calls made through the stub before klaviyo.js arrives, answered once it has: promises, a trailing
# callback, push with a callback, a track before anyone is identified. Then the page loads the script
# a second time (it must keep what was identified) and tracks an event too big for a keepalive request.
QUEUED_CALLS = """
const calls = [
  klaviyo.track("Too Early", {n: 0}),
  klaviyo.identify({email: "queue@example.com", first_name: "Q", Plan: "Trial"}),
  new Promise(resolve => klaviyo.track("Callback Check", {n: 1}, resolve)),
  new Promise(resolve => klaviyo.push(["track", "Push Check", {n: 2}, resolve])),
  klaviyo.track("Promise Check", {n: 3}),
];
const queued = window._klOnsite.length;
const script = document.createElement("script");
script.src = SCRIPT_URL;
document.head.appendChild(script);
Promise.all(calls).then(results => {
  const again = document.createElement("script");
  again.src = SCRIPT_URL;
  again.onload = () => klaviyo.track("After Load", {n: 4, big: "x".repeat(70000)})
    .then(last => done({queued, results: [...results, last]}));
  document.head.appendChild(again);
});
"""


@contextmanager
def serving(html: str) -> Iterator[str]:
    """One page on a loopback port (Chromium lets only a local page reach the local emulator)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(html.encode("utf-8"))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_script_answers_queued_calls_with_promises_and_callbacks_as_klaviyos_does(chromium, emulator):
    with serving("<!doctype html><html><head>" + loader_stub() + "</head><body></body></html>") as page_url:
        chromium.open(page_url)
        script_url = loader_url(emulator.public_key, emulator.base_url)
        answer = chromium.run_async(QUEUED_CALLS.replace("SCRIPT_URL", json.dumps(script_url)))

    assert answer["queued"] == 5  # nothing ran before the script arrived
    identified = {"email": "queue@example.com", "first_name": "Q", "Plan": "Trial"}
    assert answer["results"] == [False, identified, True, True, True, True]
    # Each call's request is sent at once, so they arrive in any order.
    stored = {e["metric"]: (e["profile_email"], e["source"], e["properties"]) for e in emulator.events()}
    assert stored.pop("After Load") == ("queue@example.com", "client", {"n": 4, "big": "x" * 70000})
    assert stored == {metric: ("queue@example.com", "client", {"n": n}) for n, metric in
                      enumerate(("Callback Check", "Push Check", "Promise Check"), start=1)}
    [profile] = emulator.profiles()
    assert (profile["first_name"], profile["properties"]) == ("Q", {"Plan": "Trial"})


def test_a_visitor_who_leaves_at_once_still_sends_every_call(chromium, emulator):
    # Klaviyo is slow to answer the identify; the page is gone long before it does. A script that
    # waited for that answer before sending the track would never send it.
    emulator.fail_next("/client/profiles", "slow", slow_seconds=1.5)
    with serving("<!doctype html><html><head>" + render_loader(emulator.public_key, emulator.base_url)
                 + "</head><body></body></html>") as page_url:
        chromium.open(page_url)
        assert chromium.run_async("(function ready() { window.__klSyncOnsite ? done(true) : setTimeout(ready, 10); })()")
        seen = len(emulator.journal())
        chromium.run('klaviyo.identify({email: "leaver@example.com"}); klaviyo.track("Left At Once", {n: 5});'
                     f" location.replace({json.dumps(page_url + 'elsewhere')});")
        posts = _wait_for_posts(emulator, seen, 2)
    assert sorted((p["path"], p["status"]) for p in posts) == [("/client/events", 202), ("/client/profiles", 202)]
    assert [(e["metric"], e["profile_email"]) for e in emulator.events()] == [("Left At Once", "leaver@example.com")]

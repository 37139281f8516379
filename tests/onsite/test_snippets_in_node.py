"""Rendered snippets run in Node.js against a stub ``klaviyo`` object that records its calls."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from kl_sync.onsite.render import render_js, render_script
from kl_sync.onsite.snippets import (
    BoxProduct,
    OnsiteCall,
    build_cancelled_account,
    build_client_events,
    build_completed_signup,
    build_identify,
    build_started_checkout,
)

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

STUB = """
const received = [];
globalThis.klaviyo = {
  identify(properties) { received.push(["identify", properties]); return Promise.resolve(properties); },
  track(metric, properties) { received.push(["track", metric, properties]); return Promise.resolve(true); },
};
"""
REPORT = "\nprocess.stdout.write(JSON.stringify(received));\n"

SMALL_BOX = BoxProduct(
    "705",
    "Only Organic Small Box Fruits & Veggies",
    Decimal("47.95"),
    "https://localhost/klcode/shop/item/only-organic-small-box",
)


def run_in_node(javascript: str) -> list:
    """Run ``javascript`` after the stub; return the calls the stub received."""
    done = subprocess.run([NODE, "-"], input=STUB + javascript + REPORT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def script_body(html: str) -> str:
    match = re.fullmatch(r'<script type="text/javascript">\n(.*)</script>\n', html, flags=re.S)
    assert match, html
    return match.group(1)


def test_started_checkout_page_sends_the_seeds_event_on_the_klaviyo_object():
    at = dt.datetime.fromtimestamp(1589562236, tz=dt.UTC)
    snippet = build_identify("ktest@example.com", "test", "mcgee") + build_started_checkout(
        1141260, SMALL_BOX, at=at, site_url="https://localhost/klcode/"
    )

    received = run_in_node(script_body(render_script(snippet)))

    assert received == [
        ["identify", {"email": "ktest@example.com", "first_name": "test", "last_name": "mcgee"}],
        [
            "track",
            "Started Checkout",
            {
                "$event_id": "1141260_1589562236",
                "$value": 47.95,
                "ItemNames": ["Only Organic Small Box Fruits & Veggies"],
                "CheckoutURL": "https://localhost/klcode/sign-up",
                "Categories": ["Boxes"],
                "Items": [
                    {
                        "ProductID": "705",
                        "ProductName": "Only Organic Small Box Fruits & Veggies",
                        "Quantity": 1,
                        "ItemPrice": 47.95,
                        "RowTotal": 47.95,
                        "ProductURL": "https://localhost/klcode/shop/item/only-organic-small-box",
                        "ImageURL": "",
                        "ProductCategories": ["Boxes"],
                    }
                ],
            },
        ],
    ]


def test_completed_signup_identifies_schedule_date_status_and_profile_flag_then_tracks():
    signed_up = dt.datetime(2020, 5, 15, 12, 35, 32, tzinfo=ZoneInfo("America/New_York"))
    snippet = build_completed_signup("Weekly", signed_up, True)

    received = run_in_node(render_js(snippet))

    assert received == [
        ["identify", {"Schedule": "Weekly", "SignUpDate": "2020-05-15T12:35:32-04:00", "Status": "Active", "HasFilledOutProfile": True}],
        ["track", "Completed Signup", {"Completed Signup": True}],
    ]


def test_cancelled_account_sets_status_stopped_and_tracks_the_cancellation_date():
    at = dt.datetime(2020, 5, 15, 12, 40, 28, tzinfo=ZoneInfo("America/New_York"))

    received = run_in_node(render_js(build_cancelled_account(at)))

    assert received == [
        ["identify", {"Status": "Stopped"}],
        ["track", "Cancelled Account", {"Cancellation Date": "2020-05-15T12:40:28-04:00"}],
    ]


HOSTILE_NAMES = [
    "</script><script>alert(1)</script>",
    "<!-- O'Brien \"quoted\" & co -->",
    "line\u2028sep\u2029para",
    "Zoë 李 \\ back\\slash\nnew line",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_values_reach_klaviyo_unchanged_and_cannot_break_out_of_the_script_tag(name):
    snippet = build_identify("x@example.com", name, name)

    html = render_script(snippet)
    body = script_body(html)

    # The only tag-like text in the element is its own open and close tag.
    assert "<" not in body and ">" not in body
    assert "\u2028" not in body and "\u2029" not in body
    assert run_in_node(body) == [["identify", {"email": "x@example.com", "first_name": name, "last_name": name}]]


def test_rendered_page_and_client_events_come_from_the_same_definitions():
    at = dt.datetime(2026, 3, 2, 9, 15, 7, tzinfo=ZoneInfo("Europe/Berlin"))
    snippet = build_identify("a@example.com", "Ana", "Silva") + build_started_checkout(42, SMALL_BOX, at=at, site_url="https://s.example")

    tracked = [call for call in run_in_node(render_js(snippet)) if call[0] == "track"]
    [event] = build_client_events(snippet, at=at)

    [[_, metric, properties]] = tracked
    assert event["metric"] == metric
    assert event["unique_id"] == properties.pop("$event_id") == f"42_{int(at.timestamp())}"
    assert event["value"] == properties.pop("$value")
    assert event["properties"] == properties
    assert event["profile"] == {"email": "a@example.com", "first_name": "Ana", "last_name": "Silva"}
    assert event["time"] == "2026-03-02T09:15:07+01:00"


def test_client_events_carry_identified_custom_properties_on_the_profile():
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    snippet = build_identify("a@example.com") + build_cancelled_account(at)

    [event] = build_client_events(snippet, at=at)

    assert event == {
        "metric": "Cancelled Account",
        "time": "2026-03-02T09:00:00+00:00",
        "properties": {"Cancellation Date": "2026-03-02T09:00:00+00:00"},
        "profile": {"email": "a@example.com", "properties": {"Status": "Stopped"}},
    }


def test_a_track_before_any_identify_by_email_is_refused():
    with pytest.raises(ValueError, match="before anyone is identified"):
        build_client_events(build_cancelled_account(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_calls_are_checked_and_frozen():
    with pytest.raises(ValueError):
        OnsiteCall("track", {"a": 1})
    with pytest.raises(ValueError):
        OnsiteCall("push", {"a": 1})
    call = OnsiteCall("identify", {"email": "a@example.com"})
    with pytest.raises(TypeError):
        call.properties["email"] = "b@example.com"  # type: ignore[index]


def test_times_must_be_aware_or_klaviyo_would_read_store_local_times_as_utc():
    naive = dt.datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="aware"):
        build_started_checkout(1, SMALL_BOX, at=naive, site_url="https://s.example")
    with pytest.raises(ValueError, match="aware"):
        build_completed_signup("Weekly", naive, False)
    with pytest.raises(ValueError, match="aware"):
        build_cancelled_account(naive)

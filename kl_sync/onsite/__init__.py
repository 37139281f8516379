"""The store's browser side: Klaviyo onsite snippets defined once, rendered for pages, simulated for the demo."""

from kl_sync.onsite.browser import plan_browser_events, post_browser_events
from kl_sync.onsite.render import render_js, render_script
from kl_sync.onsite.snippets import (
    BoxProduct,
    OnsiteCall,
    Snippet,
    build_cancelled_account,
    build_client_events,
    build_completed_signup,
    build_identify,
    build_started_checkout,
)

__all__ = [
    "BoxProduct",
    "OnsiteCall",
    "Snippet",
    "build_cancelled_account",
    "build_client_events",
    "build_completed_signup",
    "build_identify",
    "build_started_checkout",
    "plan_browser_events",
    "post_browser_events",
    "render_js",
    "render_script",
]

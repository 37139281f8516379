"""The store's browser side: Klaviyo onsite snippets defined once, rendered for pages (HTML and Jinja2
macros), served as the demo site's pages, and simulated for the demo's browsers."""

from kl_sync.onsite.browser import plan_browser_events, plan_browser_requests, post_browser_events, post_browser_requests
from kl_sync.onsite.pages import PageSnippets, install
from kl_sync.onsite.render import render_js, render_loader, render_script
from kl_sync.onsite.snippets import (
    BoxProduct,
    BrowserRequest,
    OnsiteCall,
    Snippet,
    browser_requests,
    build_cancelled_account,
    build_client_events,
    build_completed_signup,
    build_identify,
    build_started_checkout,
)

__all__ = [
    "BoxProduct",
    "BrowserRequest",
    "OnsiteCall",
    "PageSnippets",
    "Snippet",
    "browser_requests",
    "build_cancelled_account",
    "build_client_events",
    "build_completed_signup",
    "build_identify",
    "build_started_checkout",
    "install",
    "plan_browser_events",
    "plan_browser_requests",
    "post_browser_events",
    "post_browser_requests",
    "render_js",
    "render_loader",
    "render_script",
]

"""The analysis names server metrics as the settings do (KL_SYNC_LOG_METRICS), never by its own literals."""

import json

from kl_sync.analysis.duplicates import BROWSER_TWINS, DEFAULT_PAIRS, server_browser_pairs
from kl_sync.analysis.missed import START_METRICS, start_metrics
from kl_sync.onsite import snippets
from kl_sync.settings import DEFAULT_LOG_METRICS, load_settings

BROWSER_METRICS = {snippets.STARTED_CHECKOUT, snippets.COMPLETED_SIGNUP, snippets.CANCELLED_ACCOUNT}


def test_twins_are_tracked_log_types_and_real_browser_metrics():
    assert set(BROWSER_TWINS) <= set(DEFAULT_LOG_METRICS)
    assert set(BROWSER_TWINS.values()) <= BROWSER_METRICS


def test_defaults_follow_the_default_log_metrics():
    assert set(DEFAULT_PAIRS) <= set(DEFAULT_LOG_METRICS.values())
    assert set(START_METRICS) <= set(DEFAULT_LOG_METRICS.values()) | BROWSER_METRICS


def test_renamed_log_metrics_are_what_the_analysis_looks_for(monkeypatch):
    renamed = {log_type: f"{log_type} (server)" for log_type in DEFAULT_LOG_METRICS}
    monkeypatch.setenv("KL_SYNC_LOG_METRICS", json.dumps(renamed))
    log_metrics = load_settings().log_metrics
    pairs = server_browser_pairs(log_metrics)
    assert pairs == {"started.signup (server)": snippets.STARTED_CHECKOUT, "cancelled (server)": snippets.CANCELLED_ACCOUNT}
    assert start_metrics(log_metrics) == ("started.signup (server)", snippets.STARTED_CHECKOUT)
    # An untracked type has no server events to pair.
    assert server_browser_pairs({"cancelled": "Cancelled"}) == {"Cancelled": snippets.CANCELLED_ACCOUNT}

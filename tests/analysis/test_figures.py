"""The figures: titled and labelled, counts on integer axes, no line drawn across an empty month."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kl_sync.analysis.drift import compare_profiles
from kl_sync.analysis.duplicates import find_duplicates
from kl_sync.analysis.figures import (
    plot_signup_funnel,
    plot_stale_fields,
    plot_stalled,
    plot_twin_delays,
    plot_twin_shares,
    plot_twins_by_month,
)
from kl_sync.analysis.loaders import KLAVIYO_PROFILE_COLUMNS
from kl_sync.analysis.missed import add_klaviyo_view, build_signup_profiles, find_missed_signups, signup_funnel

T0 = pd.Timestamp("2026-03-02 10:00:00", tz="UTC")


def starts(*days: float) -> pd.DataFrame:
    return pd.DataFrame([{"id": f"e{i}", "metric": "started.signup", "email": f"p{i}@example.com", "datetime": T0 + pd.Timedelta(days=d)}
                         for i, d in enumerate(days)])


CUSTOMERS = pd.DataFrame([
    {"id": 0, "email": "p0@example.com", "first_name": "A", "last_name": "B", "box": "Box", "schedule": "Weekly", "status": "Active",
     "email_subscribed": True, "signup_date": T0.tz_localize(None), "created_at": T0.tz_localize(None)},
])
NO_PROFILES = pd.DataFrame(columns=KLAVIYO_PROFILE_COLUMNS)


def panels(fig: Figure) -> list:
    """The axes that show data (an empty panel has no ticks and says why in its text)."""
    return [ax for ax in fig.axes if len(ax.get_xticks()) or len(ax.get_yticks())]


def count_axes(fig: Figure) -> list:
    """Every axis whose label says it counts something (people, events, pairs, profiles)."""
    found = []
    for ax in panels(fig):
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if any(word in label for word in ("people", "events", "pairs", "profiles")):
                found.append(axis)
    return found


def check_labelled(fig: Figure) -> None:
    for ax in panels(fig):
        siblings = ax.get_shared_x_axes().get_siblings(ax)  # a twin axis shares its x axis, title and x label
        assert any(other.get_title() for other in siblings) or fig.get_suptitle(), "every figure has a title"
        assert ax.get_ylabel(), f"axes {ax.get_title()!r} have no y label"
        assert any(other.get_xlabel() for other in siblings), f"axes {ax.get_title()!r} have no x label"
    axes = count_axes(fig)
    assert axes, "a figure of counts labels its count axis"
    for axis in axes:
        locator = axis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer, "count axes tick whole numbers"
    fig.canvas.draw()  # renders without error


def test_funnel_figure_is_titled_labelled_and_leaves_a_gap_for_an_empty_month():
    profiles = build_signup_profiles(starts(0, 1, 62), CUSTOMERS)
    fig = plot_signup_funnel(signup_funnel(profiles), "since 2026-03-01")

    check_labelled(fig)
    assert fig.axes[0].get_title() == "Sign-up funnel since 2026-03-01"
    [rate_line] = [line for ax in fig.axes for line in ax.get_lines()]
    rates = list(rate_line.get_ydata())
    assert rates[0] == pytest.approx(50.0) and math.isnan(rates[1]) and rates[2] == 0.0  # April had no starts: no line through it
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["2026-03", "2026-04", "2026-05"]


def test_stalled_figure_counts_people():
    profiles = build_signup_profiles(starts(0, 1, 2), CUSTOMERS)
    missed = add_klaviyo_view(find_missed_signups(profiles), NO_PROFILES)

    check_labelled(plot_stalled(missed))


def duplicate_events() -> pd.DataFrame:
    rows = []
    for i, day in enumerate((0, 0, 45)):  # January and the month after next: one month between is empty
        at = pd.Timestamp("2026-01-10", tz="UTC") + pd.Timedelta(days=day, minutes=i)
        rows.append({"id": f"s{i}", "metric": "started.signup", "profile_id": f"p{i}", "email": f"p{i}@example.com", "datetime": at,
                     "unique_id": f"log:{i}"})
        rows.append({"id": f"b{i}", "metric": "Started Checkout", "profile_id": f"p{i}", "email": f"p{i}@example.com",
                     "datetime": at + pd.Timedelta(seconds=20 + i), "unique_id": f"{i}_1"})
    return pd.DataFrame(rows)


def test_duplicate_figures_are_titled_labelled_and_count_in_whole_numbers():
    report = find_duplicates(duplicate_events())

    for fig in (plot_twins_by_month(report), plot_twin_delays(report)):
        check_labelled(fig)
    shares = plot_twin_shares(report)
    assert shares.axes[0].get_title() and shares.axes[0].get_xlabel()
    assert [t.get_text() for t in shares.axes[0].texts] == ["3 of 3", "0 of 0"]
    monthly = report.monthly[report.monthly["metric_pair"] == "started.signup / Started Checkout"]
    assert [str(m) for m in monthly["month"]] == ["2026-01", "2026-02"] and monthly["pairs"].tolist() == [2, 1]


def test_stale_profile_figure():
    customers = pd.DataFrame([{"id": 1, "email": "a@example.com", "status": "Active", "schedule": "Weekly", "box": "Box",
                               "created_at": T0, "updated_at": T0}])
    profiles = pd.DataFrame([{**{c: None for c in KLAVIYO_PROFILE_COLUMNS}, "profile_id": "P1", "email": "a@example.com",
                              "Status": "Pending"}], columns=KLAVIYO_PROFILE_COLUMNS)

    fig = plot_stale_fields(compare_profiles(profiles, customers))

    check_labelled(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == ["1", "1", "1"]


def test_figures_of_nothing_say_so():
    empty = build_signup_profiles(pd.DataFrame(columns=["id", "metric", "email", "datetime"]), CUSTOMERS)
    report = find_duplicates(pd.DataFrame(columns=["id", "metric", "profile_id", "email", "datetime"]))

    for fig in (plot_signup_funnel(signup_funnel(empty), "in the whole history"), plot_twins_by_month(report), plot_twin_delays(report),
                plot_stalled(add_klaviyo_view(find_missed_signups(empty), NO_PROFILES))):
        fig.canvas.draw()
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any(text.startswith("no ") for text in texts)

"""Missed-signup rulesets on planted profiles: every branch of the seed's rule, and the examples."""

from __future__ import annotations

import pandas as pd
import pytest

from kl_sync.analysis.missed import (
    DEFAULT_RULES,
    INCOMPLETE_SIGNUP,
    MISSED_COLUMNS,
    NEVER_COMPLETED,
    Rule,
    build_signup_profiles,
    came_back_later,
    find_missed_signups,
    signup_funnel_by_week,
    stalled_more_than,
)

T0 = pd.Timestamp("2026-03-02 10:00:00", tz="UTC")


def start(email: str, days: float = 0, metric: str = "started.signup") -> dict:
    return {"id": f"{email}-{days}-{metric}", "metric": metric, "email": email, "datetime": T0 + pd.Timedelta(days=days)}


def customer(id_: int, email: str, box="Local Harvest Box", schedule="Weekly", status="Active", signed_up=True) -> dict:
    return {
        "id": id_, "email": email, "box": box, "schedule": schedule, "status": status,
        "signup_date": (T0 + pd.Timedelta(hours=1)).tz_localize(None) if signed_up else None,
        "created_at": T0.tz_localize(None),
    }


CUSTOMERS = pd.DataFrame([
    customer(1, "complete@example.com"),
    customer(2, "no-box@example.com", box=None),
    customer(3, "blank-box@example.com", box="  "),
    customer(4, "no-schedule@example.com", schedule=None),
    customer(5, "pending@example.com", box=None, schedule=None, status="Pending", signed_up=False),
    customer(6, "stopped@example.com", status="Stopped"),
    customer(7, "never-started@example.com", box=None, schedule=None, status="Pending", signed_up=False),
])


def profiles_for(*events: dict, customers: pd.DataFrame = CUSTOMERS, **kwargs) -> pd.DataFrame:
    return build_signup_profiles(pd.DataFrame(list(events)), customers, **kwargs)


@pytest.mark.parametrize(
    ("email", "missed"),
    [
        ("complete@example.com", False),
        ("no-box@example.com", True),
        ("blank-box@example.com", True),
        ("no-schedule@example.com", True),
        ("pending@example.com", True),
        ("stopped@example.com", True),  # the seed's rule, read literally: not Active
        ("stranger@example.com", True),  # started, and the store has no such customer
    ],
)
def test_each_branch_of_the_seeds_rule(email, missed):
    profiles = profiles_for(start(email, metric="Started Checkout"))

    result = find_missed_signups(profiles)

    assert (email in set(result["email"])) is missed


def test_only_people_who_started_are_considered():
    profiles = profiles_for(start("pending@example.com"), {"id": "o", "metric": "Placed Order", "email": "never-started@example.com", "datetime": T0})

    assert list(profiles["email"]) == ["pending@example.com"]
    assert list(find_missed_signups(profiles)["email"]) == ["pending@example.com"]


def test_result_rows_name_customer_rule_and_first_start():
    profiles = profiles_for(start(" Pending@Example.com", days=2), start("pending@example.com", days=0, metric="Started Checkout"),
                            start("stranger@example.com", days=1))

    result = find_missed_signups(profiles, DEFAULT_RULES)

    assert list(result.columns) == MISSED_COLUMNS
    assert result.to_dict("records") == [
        {"email": "pending@example.com", "customer_id": 5, "rule": "incomplete_signup", "started_at": T0},
        {"email": "stranger@example.com", "customer_id": None, "rule": "incomplete_signup", "started_at": T0 + pd.Timedelta(days=1)},
    ]


def test_stalled_more_than_counts_days_from_as_of():
    profiles = profiles_for(start("pending@example.com"), start("no-box@example.com", days=9), as_of=T0 + pd.Timedelta(days=10))

    result = find_missed_signups(profiles, [stalled_more_than(3)])

    assert result[["email", "rule"]].to_dict("records") == [{"email": "pending@example.com", "rule": "stalled_more_than_3d"}]


def test_came_back_later_needs_a_second_start_days_after_the_first():
    profiles = profiles_for(
        start("pending@example.com"), start("pending@example.com", days=4, metric="Started Checkout"),
        start("no-box@example.com"), start("no-box@example.com", days=0.01, metric="Started Checkout"),  # a twin, not a return
        start("complete@example.com"), start("complete@example.com", days=5),
    )

    result = find_missed_signups(profiles, [came_back_later(days=2)])

    assert list(result["email"]) == ["pending@example.com"]


def test_never_completed_leaves_out_customers_who_finished_and_later_cancelled():
    profiles = profiles_for(start("stopped@example.com"), start("pending@example.com"))

    result = find_missed_signups(profiles, [NEVER_COMPLETED])

    assert list(result["email"]) == ["pending@example.com"]


def test_a_ruleset_is_data_and_reports_every_rule_that_matched_in_its_order():
    custom = Rule("checked_out_in_browser_only", lambda p: p["start_events"] == 1)
    profiles = profiles_for(start("pending@example.com"))

    result = find_missed_signups(profiles, [INCOMPLETE_SIGNUP, custom])

    assert list(result["rule"]) == ["incomplete_signup", "checked_out_in_browser_only"]


def test_newest_customer_wins_when_an_email_is_shared():
    customers = pd.DataFrame([customer(1, "a@example.com", status="Stopped"), customer(9, "A@example.com ")])
    customers.loc[1, "created_at"] = customers.loc[0, "created_at"] + pd.Timedelta(days=1)

    profiles = profiles_for(start("a@example.com"), customers=customers)

    assert profiles["customer_id"].tolist() == [9] and profiles["complete"].tolist() == [True]


def test_funnel_by_week_counts_started_completed_and_missed():
    profiles = profiles_for(start("complete@example.com"), start("pending@example.com"), start("no-box@example.com", days=7))
    missed = find_missed_signups(profiles)

    funnel = signup_funnel_by_week(profiles, missed)

    assert funnel[["week", "started", "completed", "missed"]].to_dict("records") == [
        {"week": "2026-W10", "started": 2, "completed": 1, "missed": 1},
        {"week": "2026-W11", "started": 1, "completed": 0, "missed": 1},
    ]
    assert str(funnel["week_start"].iloc[0].date()) == "2026-03-02"

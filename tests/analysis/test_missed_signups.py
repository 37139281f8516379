"""Missed-signup rulesets on planted profiles: every branch of the seed's rule, one row per person,
who may be e-mailed and why not, the funnel and its sentences."""

from __future__ import annotations

import pandas as pd
import pytest

from kl_sync.analysis.missed import (
    AFTER_STEP_1,
    DEAD,
    DEFAULT_RULES,
    INCOMPLETE_SIGNUP,
    MISSED_COLUMNS,
    NEVER_COMPLETED,
    NO_CONSENT,
    NOT_IN_STORE,
    SUPPRESSED,
    UNSUBSCRIBED,
    Rule,
    add_klaviyo_view,
    build_signup_profiles,
    came_back_later,
    find_missed_signups,
    funnel_sentences,
    in_window,
    rule_table,
    signup_funnel,
    stalled_more_than,
    stalled_sentences,
    stalled_table,
)
from kl_sync.analysis.loaders import KLAVIYO_PROFILE_COLUMNS
from kl_sync.analysis.push import plan_win_back

T0 = pd.Timestamp("2026-03-02 10:00:00", tz="UTC")


def start(email: str, days: float = 0, metric: str = "started.signup") -> dict:
    return {"id": f"{email}-{days}-{metric}", "metric": metric, "email": email, "datetime": T0 + pd.Timedelta(days=days)}


def customer(id_: int, email: str, box="Local Harvest Box", schedule="Weekly", status="Active", signed_up=True,
             subscribed=True) -> dict:
    return {
        "id": id_, "email": email, "first_name": f" First{id_} ", "last_name": f"Last{id_}", "box": box, "schedule": schedule,
        "status": status, "email_subscribed": subscribed,
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
    customer(8, "unsubscribed@example.com", box=None, schedule=None, status="Pending", signed_up=False, subscribed=False),
    customer(9, "dead@example.com", box=None, schedule=None, status="Dead", signed_up=False),
    customer(10, "bounced@example.com", box=None, schedule=None, status="Pending", signed_up=False),
])


def profiles_for(*events: dict, customers: pd.DataFrame = CUSTOMERS, **kwargs) -> pd.DataFrame:
    return build_signup_profiles(pd.DataFrame(list(events)), customers, **kwargs)


def klaviyo(*rows: dict) -> pd.DataFrame:
    """Klaviyo's profiles as load_profiles returns them."""
    base = {column: None for column in KLAVIYO_PROFILE_COLUMNS}
    frame = pd.DataFrame([{**base, "suppressed": False, "suppression_reasons": "", **row} for row in rows], columns=KLAVIYO_PROFILE_COLUMNS)
    frame["last_event_date"] = pd.to_datetime(frame["last_event_date"], utc=True)
    return frame


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


def test_one_row_per_person_with_every_rule_they_match_in_the_rulesets_order():
    profiles = profiles_for(
        start(" Pending@Example.com", days=0), start("pending@example.com", days=0.001, metric="Started Checkout"),  # twins
        start("pending@example.com", days=5, metric="Started Checkout"),  # came back
        start("stopped@example.com"), start("stranger@example.com", days=1),
        as_of=T0 + pd.Timedelta(days=10),
    )
    zero = stalled_more_than(100)
    rules = [INCOMPLETE_SIGNUP, NEVER_COMPLETED, stalled_more_than(7), came_back_later(2), zero]

    result = find_missed_signups(profiles, rules)

    assert result["email"].is_unique
    assert dict(zip(result["email"], result["rules"])) == {
        "pending@example.com": "incomplete_signup, never_completed, stalled_more_than_7d, came_back_after_2d",
        "stopped@example.com": "incomplete_signup",
        "stranger@example.com": "incomplete_signup, never_completed, stalled_more_than_7d",
    }
    pending = result.set_index("email").loc["pending@example.com"]
    assert (pending["customer_id"], pending["name"], pending["start_events"]) == (5, "First5 Last5", 3)
    assert (pending["started_at"], pending["last_started_at"]) == (T0, T0 + pd.Timedelta(days=5))
    assert dict(zip(result["email"], result["stalled_at"])) == {
        "pending@example.com": AFTER_STEP_1, "stopped@example.com": "finished, now Stopped", "stranger@example.com": NOT_IN_STORE,
    }


def test_the_rule_table_shows_every_rule_with_its_count_even_zero():
    rules = [INCOMPLETE_SIGNUP, NEVER_COMPLETED, came_back_later(1), stalled_more_than(100)]
    missed = find_missed_signups(profiles_for(start("pending@example.com"), start("stopped@example.com")), rules)

    table = rule_table(missed, rules)

    assert table[["rule", "people"]].to_dict("records") == [
        {"rule": "incomplete_signup", "people": 2},
        {"rule": "never_completed", "people": 1},
        {"rule": "came_back_after_1d", "people": 0},
        {"rule": "stalled_more_than_100d", "people": 0},
    ]
    assert table["description"].str.len().min() > 0


def test_stalled_more_than_counts_days_from_as_of():
    profiles = profiles_for(start("pending@example.com"), start("no-box@example.com", days=9), as_of=T0 + pd.Timedelta(days=10))

    result = find_missed_signups(profiles, [stalled_more_than(3)])

    assert result[["email", "rules"]].to_dict("records") == [{"email": "pending@example.com", "rules": "stalled_more_than_3d"}]


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


def test_a_ruleset_is_data():
    custom = Rule("checked_out_in_browser_only", lambda p: p["start_events"] == 1)
    profiles = profiles_for(start("pending@example.com"))

    result = find_missed_signups(profiles, [INCOMPLETE_SIGNUP, custom])

    assert list(result["rules"]) == ["incomplete_signup, checked_out_in_browser_only"]


def test_newest_customer_wins_when_an_email_is_shared():
    customers = pd.DataFrame([customer(1, "a@example.com", status="Stopped"), customer(9, "A@example.com ")])
    customers.loc[1, "created_at"] = customers.loc[0, "created_at"] + pd.Timedelta(days=1)

    profiles = profiles_for(start("a@example.com"), customers=customers)

    assert profiles["customer_id"].tolist() == [9] and profiles["complete"].tolist() == [True]


def test_the_window_keeps_people_with_a_start_since_and_starts_after_as_of_do_not_count():
    profiles = profiles_for(start("pending@example.com", days=-100), start("pending@example.com", days=-1),
                            start("stopped@example.com", days=-100), start("no-box@example.com", days=3), as_of=T0)

    window = in_window(profiles, T0 - pd.Timedelta(days=90))

    assert list(profiles["email"]) == ["pending@example.com", "stopped@example.com"]  # no-box started after as_of
    assert list(window["email"]) == ["pending@example.com"]
    assert list(in_window(profiles, None)["email"]) == list(profiles["email"])


def missed_with_klaviyo(*emails: str, profiles: pd.DataFrame) -> pd.DataFrame:
    missed = find_missed_signups(profiles_for(*(start(e) for e in emails)))
    return add_klaviyo_view(missed, profiles)


def test_who_may_be_emailed_and_the_first_reason_why_not():
    emails = ["pending@example.com", "unsubscribed@example.com", "dead@example.com", "bounced@example.com",
              "stranger@example.com", "stopped@example.com", "not-an-email"]
    profiles = klaviyo(
        {"email": "unsubscribed@example.com", "suppressed": True, "suppression_reasons": "USER_SUPPRESSED"},
        {"email": "dead@example.com", "suppressed": True, "suppression_reasons": "USER_SUPPRESSED"},
        {"email": "bounced@example.com", "suppressed": True, "suppression_reasons": "HARD_BOUNCE"},
        {"email": "pending@example.com", "last_event_date": "2026-03-09T10:00:00+00:00"},
    )

    people = missed_with_klaviyo(*emails, profiles=profiles)

    assert list(people.columns[: len(MISSED_COLUMNS)]) == MISSED_COLUMNS
    assert dict(zip(people["email"], people["not_emailed_because"])) == {
        "pending@example.com": "", "stopped@example.com": "", "unsubscribed@example.com": UNSUBSCRIBED,
        "dead@example.com": DEAD, "bounced@example.com": SUPPRESSED, "stranger@example.com": NO_CONSENT,
        "not-an-email": "no valid e-mail",
    }
    assert people.set_index("email")["can_email"].to_dict()["pending@example.com"]
    assert people.set_index("email").loc["bounced@example.com", "suppressed_in_klaviyo"] == "HARD_BOUNCE"
    # last activity: Klaviyo's last event when later than the last start
    assert people.set_index("email").loc["pending@example.com", "last_activity"] == pd.Timestamp("2026-03-09T10:00:00Z")
    assert people.set_index("email").loc["dead@example.com", "last_activity"] == T0


def test_a_profile_that_cannot_receive_marketing_counts_as_suppressed_without_a_reason():
    people = missed_with_klaviyo("pending@example.com", profiles=klaviyo({"email": "pending@example.com", "suppressed": True}))

    assert people["suppressed_in_klaviyo"].tolist() == ["cannot receive e-mail marketing"]
    assert people["not_emailed_because"].tolist() == [SUPPRESSED]


def test_the_win_back_plan_takes_only_people_who_never_finished_and_may_be_emailed():
    people = missed_with_klaviyo("pending@example.com", "stopped@example.com", "dead@example.com", "unsubscribed@example.com",
                                 profiles=klaviyo())

    plan = plan_win_back(people)

    assert list(plan.audience["email"]) == ["pending@example.com"]
    assert dict(zip(plan.left_out["email"], plan.left_out["left_out_because"])) == {
        "stopped@example.com": "finished the sign-up (now Stopped)", "dead@example.com": DEAD,
        "unsubscribed@example.com": UNSUBSCRIBED,
    }
    assert plan.left_out_counts() == {DEAD: 1, UNSUBSCRIBED: 1, "finished the sign-up (now Stopped)": 1}


def test_funnel_stages_months_and_sentences():
    profiles = profiles_for(
        *(start(e) for e in ("complete@example.com", "stopped@example.com", "pending@example.com", "dead@example.com")),
        start("no-box@example.com", days=62),  # two months later; the month between is empty
        as_of=T0 + pd.Timedelta(days=70),
    )
    missed = add_klaviyo_view(find_missed_signups(profiles, [INCOMPLETE_SIGNUP]), klaviyo())

    funnel = signup_funnel(profiles)

    assert funnel.stages[["stage", "people"]].to_dict("records") == [
        {"stage": "started", "people": 5}, {"stage": "completed", "people": 3}, {"stage": "still active", "people": 2},
    ]
    months = funnel.monthly
    assert [str(m) for m in months["month"]] == ["2026-03", "2026-04", "2026-05"]
    assert months["started"].tolist() == [4, 0, 1] and months["completed"].tolist() == [2, 0, 1]
    assert months["still_active"].tolist() == [1, 0, 1]
    assert months["completed_rate"].iloc[0] == 0.5 and pd.isna(months["completed_rate"].iloc[1])
    assert funnel_sentences(funnel, missed, "since 2026-03-01") == [
        "Of 5 people who started a sign-up since 2026-03-01, 2 (40%) did not finish; 1 of them can be e-mailed.",
        "3 (60%) completed it and 2 (40%) are still active.",
    ]


def test_the_funnel_compares_months_only_with_enough_starts():
    emails = [f"p{i}@example.com" for i in range(10)]
    customers = pd.DataFrame([customer(i, e, status="Active" if i < 3 else "Pending", signed_up=i < 3) for i, e in enumerate(emails)]
                             + [customer(20, "late@example.com", box=None, schedule=None, status="Pending", signed_up=False)])
    profiles = profiles_for(*(start(e, days=i % 2 * 31) for i, e in enumerate(emails)), start("late@example.com", days=62),
                            customers=customers)
    missed = add_klaviyo_view(find_missed_signups(profiles), klaviyo())

    sentences = funnel_sentences(signup_funnel(profiles), missed, "in the whole history")

    # March: p0, p2, p4, p6, p8 (2 of 5 finished); April: p1, p3, ... (1 of 5); May: one start, not compared.
    assert sentences[-1] == ("Of the months with at least 5 starts, completion was lowest for starts in April 2026 (20% of 5) "
                             "and highest in March 2026 (40% of 5).")


def test_nobody_started():
    profiles = build_signup_profiles(pd.DataFrame(columns=["id", "metric", "email", "datetime"]), CUSTOMERS)
    missed = add_klaviyo_view(find_missed_signups(profiles), klaviyo())

    funnel = signup_funnel(profiles)

    assert funnel.stages["people"].tolist() == [0, 0, 0] and funnel.monthly.empty
    assert funnel_sentences(funnel, missed, "since 2026-03-01") == ["Nobody started a sign-up since 2026-03-01."]
    assert stalled_sentences(missed) == ["No missed signups: nobody stalled."]
    assert rule_table(missed, DEFAULT_RULES)["people"].tolist() == [0]


def test_where_they_stalled_in_a_table_and_sentences():
    missed = add_klaviyo_view(find_missed_signups(profiles_for(
        start("pending@example.com"), start("unsubscribed@example.com"), start("stopped@example.com"), start("stranger@example.com"))),
        klaviyo())

    assert stalled_table(missed).to_dict("records") == [
        {"stalled_at": AFTER_STEP_1, "people": 2}, {"stalled_at": NOT_IN_STORE, "people": 1},
        {"stalled_at": "finished, now Stopped", "people": 1},
    ]
    assert stalled_sentences(missed) == [
        "2 of the 4 missed signups stalled after step 1 and never finished.",
        "1 person finished the sign-up and later left (the seed's rule counts them as missed); the win-back push leaves them out.",
    ]

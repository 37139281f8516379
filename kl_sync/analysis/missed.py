"""Missed signups: people who started signing up and did not finish, as rulesets of data.

The seed's rule: a Klaviyo contact with ``started.signup`` or ``Started Checkout`` that does NOT have
a box, a schedule and status ``Active`` is a missed signup ("only when customers have completed the
sign up process will they have a schedule, box, and a status of Active").

:func:`build_signup_profiles` makes one row per person who started (by folded e-mail) with the store's
current view of them; a :class:`Rule` is a name and a predicate over that frame, so a new rule is a
few lines and a ruleset is a tuple. Note that the seed's rule, read literally, also counts people
who completed and later cancelled (status Stopped); :data:`NEVER_COMPLETED` is the rule for those
who never reached the last step at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from kl_sync.analysis.duplicates import iso_week, week_start

START_METRICS = ("started.signup", "Started Checkout")

PROFILE_COLUMNS = [
    "email",
    "customer_id",
    "started_at",
    "last_started_at",
    "start_events",
    "box",
    "schedule",
    "status",
    "signup_date",
    "complete",
    "days_since_start",
]
#: The columns of ``missed_signups.csv``.
MISSED_COLUMNS = ["email", "customer_id", "rule", "started_at"]


@dataclass(frozen=True)
class Rule:
    """A named predicate over the signup-profile frame: True where a row is a missed signup."""

    name: str
    predicate: Callable[[pd.DataFrame], pd.Series]
    description: str = ""


def _filled(column: pd.Series) -> pd.Series:
    return column.notna() & (column.astype("string").str.strip() != "")


def is_complete(profiles: pd.DataFrame) -> pd.Series:
    """Has a box, a schedule and status Active: the only shape of a finished sign-up."""
    return (_filled(profiles["box"]) & _filled(profiles["schedule"]) & (profiles["status"] == "Active")).fillna(False).astype(bool)


INCOMPLETE_SIGNUP = Rule(
    "incomplete_signup",
    lambda p: ~p["complete"],
    "started, and lacks a box, a schedule or status Active (the seed's rule)",
)
NEVER_COMPLETED = Rule(
    "never_completed",
    lambda p: p["signup_date"].isna(),
    "started and never reached the last step (no sign-up date), whatever the status now",
)
DEFAULT_RULES: tuple[Rule, ...] = (INCOMPLETE_SIGNUP,)


def stalled_more_than(days: float) -> Rule:
    """Incomplete, and the first start is more than ``days`` old."""
    return Rule(
        f"stalled_more_than_{days:g}d",
        lambda p: ~p["complete"] & (p["days_since_start"] > days),
        f"started more than {days:g} days ago and still incomplete",
    )


def came_back_later(days: float = 1) -> Rule:
    """Incomplete, but started again at least ``days`` after the first start: a warm lead."""
    return Rule(
        f"came_back_after_{days:g}d",
        lambda p: ~p["complete"] & ((p["last_started_at"] - p["started_at"]) >= pd.Timedelta(days=days)),
        f"started again at least {days:g} days after the first start, still incomplete",
    )


def _fold(emails: pd.Series) -> pd.Series:
    return emails.astype("string").str.strip().str.lower()


def build_signup_profiles(
    events: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    start_metrics: Sequence[str] = START_METRICS,
    as_of: dt.datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per e-mail with a start event, joined with the store's customer of that e-mail.

    ``events`` are the reads' event frame (``metric``, ``email``, ``datetime``); ``customers`` the
    store's table (``id``, ``email``, ``box``, ``schedule``, ``status``, ``signup_date``,
    ``created_at``); when one e-mail has several customers the newest counts. ``as_of`` (default: the
    last event's time, so a result does not change with the clock) dates ``days_since_start``.
    """
    starts = events[events["metric"].isin(list(start_metrics))].copy()
    starts["email"] = _fold(starts["email"])
    starts["datetime"] = pd.to_datetime(starts["datetime"], utc=True)
    starts = starts[starts["email"].notna() & (starts["email"] != "")]
    grouped = starts.groupby("email").agg(
        started_at=("datetime", "min"), last_started_at=("datetime", "max"), start_events=("datetime", "size")
    ).reset_index()

    people = customers.copy()
    people["email"] = _fold(people["email"])
    people = people[people["email"].notna()]
    if "created_at" in people:
        people = people.sort_values(["created_at", "id"], kind="mergesort")
    people = people.drop_duplicates("email", keep="last")
    people = people[["email", "id", "box", "schedule", "status", "signup_date"]].rename(columns={"id": "customer_id"})

    profiles = grouped.merge(people, on="email", how="left")
    profiles["customer_id"] = profiles["customer_id"].astype("Int64")
    profiles["complete"] = is_complete(profiles)
    if as_of is None:
        all_times = pd.to_datetime(events["datetime"], utc=True)
        reference = all_times.max() if len(all_times) else pd.Timestamp.now(tz="UTC")
    else:
        reference = pd.Timestamp(as_of)
        reference = reference.tz_localize("UTC") if reference.tzinfo is None else reference.tz_convert("UTC")
    profiles["days_since_start"] = (reference - profiles["started_at"]).dt.total_seconds() / 86400
    return profiles[PROFILE_COLUMNS].sort_values(["started_at", "email"], kind="mergesort").reset_index(drop=True)


def find_missed_signups(profiles: pd.DataFrame, rules: Sequence[Rule] = DEFAULT_RULES) -> pd.DataFrame:
    """One row per profile and rule it matches: ``email, customer_id, rule, started_at``."""
    matches = []
    for order, rule in enumerate(rules):
        hit = rule.predicate(profiles).fillna(False).astype(bool)
        matches.append(profiles.loc[hit, ["email", "customer_id", "started_at"]].assign(rule=rule.name, _order=order))
    if not matches:
        return pd.DataFrame(columns=MISSED_COLUMNS)
    missed = pd.concat(matches, ignore_index=True)
    missed["customer_id"] = missed["customer_id"].astype("Int64")
    # Within a profile, rules keep the ruleset's order.
    missed = missed.sort_values(["started_at", "email", "_order"], kind="mergesort")
    return missed[MISSED_COLUMNS].reset_index(drop=True)


def signup_funnel_by_week(profiles: pd.DataFrame, missed: pd.DataFrame) -> pd.DataFrame:
    """Per ISO week of the first start: people who started, completed, and were flagged missed."""
    frame = profiles[["email", "started_at", "complete"]].copy()
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["missed"] = frame["email"].isin(missed["email"])
    if frame.empty:
        return pd.DataFrame(columns=["week", "week_start", "started", "completed", "missed"])
    frame["week"] = iso_week(frame["started_at"])
    frame["week_start"] = week_start(frame["started_at"])
    funnel = frame.groupby(["week", "week_start"]).agg(
        started=("email", "size"), completed=("complete", "sum"), missed=("missed", "sum")
    )
    return funnel.reset_index().astype({"completed": int, "missed": int})

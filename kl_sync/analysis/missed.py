"""Missed signups: people who started signing up and did not finish, one row per person.

The seed's rule: a Klaviyo contact with ``started.signup`` or ``Started Checkout`` that does NOT have
a box, a schedule and status ``Active`` is a missed signup ("only when customers have completed the
sign up process will they have a schedule, box, and a status of Active").

:func:`build_signup_profiles` makes one row per person who started (by folded e-mail) with the store's
current view of them; a :class:`Rule` is a name and a predicate over that frame, so a new rule is a
few lines and a ruleset is a tuple. :func:`find_missed_signups` lists each person who matches any
rule once, with the rules they match and the step where they stalled; :func:`add_klaviyo_view`
adds what Klaviyo knows (suppression, last activity) and whether they may be e-mailed.

The seed's rule, read literally, also counts people who completed and later cancelled (status
Stopped or Dead); :data:`NEVER_COMPLETED` is the rule for those who never finished at all, and the
win-back push (:mod:`kl_sync.analysis.push`) only takes those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from kl_sync.analysis.duplicates import BROWSER_TWINS, STARTED_SIGNUP
from kl_sync.analysis.text import count, pct, verb
from kl_sync.normalize import clean_name, normalize_email
from kl_sync.settings import DEFAULT_LOG_METRICS


def start_metrics(log_metrics: Mapping[str, str] = DEFAULT_LOG_METRICS) -> tuple[str, ...]:
    """The metrics that mean "started signing up": the server's (named by the settings' log metrics)
    and the browser's."""
    server = (log_metrics[STARTED_SIGNUP],) if STARTED_SIGNUP in log_metrics else ()
    return (*server, BROWSER_TWINS[STARTED_SIGNUP])


START_METRICS = start_metrics()

PROFILE_COLUMNS = [
    "email",
    "customer_id",
    "name",
    "started_at",
    "last_started_at",
    "start_events",
    "box",
    "schedule",
    "status",
    "subscribed",
    "signup_date",
    "complete",
    "finished",
    "days_since_start",
]
#: One row per person (``missed_signups.csv``), after :func:`add_klaviyo_view`.
MISSED_COLUMNS = [
    "email",
    "customer_id",
    "name",
    "box",
    "schedule",
    "status",
    "subscribed",
    "suppressed_in_klaviyo",
    "started_at",
    "last_activity",
    "stalled_at",
    "rules",
    "can_email",
    "not_emailed_because",
]

#: Where a person stalled (the seed's steps: step 1 is box, name, e-mail and address, which fires
#: Started Checkout; the last step, the 'first-time' page, sets schedule, sign-up date and Active).
NOT_IN_STORE = "not in the store"
AFTER_STEP_1 = "after step 1 (never finished)"
FINISHED_INCOMPLETE = "finished, but lacks a box or schedule"
#: Followed by the status: finished the sign-up, and left since.
FINISHED_NOW = "finished, now "
STALL_ORDER = (AFTER_STEP_1, NOT_IN_STORE, f"{FINISHED_NOW}Stopped", f"{FINISHED_NOW}Dead", FINISHED_INCOMPLETE)
#: How a sentence says that someone stalled there.
STALL_PHRASES = {
    AFTER_STEP_1: "stalled after step 1 and never finished",
    NOT_IN_STORE: "started in the browser and have no record in the store",
    FINISHED_INCOMPLETE: "finished but lack a box or a schedule",
}

#: Why someone may not be e-mailed, in the order they are named (a person gets the first that holds).
NO_VALID_EMAIL = "no valid e-mail"
DEAD = "Dead in the store"
UNSUBSCRIBED = "unsubscribed in the store"
SUPPRESSED = "suppressed in Klaviyo"
NO_CONSENT = "not in the store (no consent on record)"


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
    lambda p: ~p["finished"],
    "started and never reached the last step (no sign-up date), whatever the status now",
)
DEFAULT_RULES: tuple[Rule, ...] = (INCOMPLETE_SIGNUP,)


def stalled_more_than(days: float) -> Rule:
    """Never finished, and the first start is more than ``days`` old."""
    return Rule(
        f"stalled_more_than_{days:g}d",
        lambda p: ~p["finished"] & (p["days_since_start"] > days),
        f"started more than {_days(days)} ago and never finished",
    )


def _days(days: float) -> str:
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def came_back_later(days: float = 1) -> Rule:
    """Never finished, but started again at least ``days`` after the first start: a warm lead."""
    return Rule(
        f"came_back_after_{days:g}d",
        lambda p: ~p["finished"] & ((p["last_started_at"] - p["started_at"]) >= pd.Timedelta(days=days)),
        f"started again at least {_days(days)} after the first start, never finished",
    )


def notebook_rules(stalled_days: float = 7, came_back_after_days: float = 1) -> tuple[Rule, ...]:
    """The missed-signups notebook's ruleset: the seed's, never completed, stalled, came back."""
    return (INCOMPLETE_SIGNUP, NEVER_COMPLETED, stalled_more_than(stalled_days), came_back_later(came_back_after_days))


def _fold(emails: pd.Series) -> pd.Series:
    return emails.astype("string").str.strip().str.lower()


def _utc(value: dt.datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _full_name(first: object, last: object) -> str | None:
    parts = [part for part in (clean_name(first), clean_name(last)) if part]
    return " ".join(parts) or None


def build_signup_profiles(
    events: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    start_metrics: Sequence[str] = START_METRICS,
    as_of: dt.datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per e-mail with a start event, joined with the store's customer of that e-mail.

    ``events`` are the reads' event frame (``metric``, ``email``, ``datetime``); ``customers`` the
    store's table; when one e-mail has several customers the newest counts. ``as_of`` (default: the
    last event's time, so a result does not change with the clock) dates ``days_since_start``;
    start events after it are not counted. ``finished``: reached the last step (a sign-up date), or
    complete.
    """
    starts = events[events["metric"].isin(list(start_metrics))].copy()
    starts["email"] = _fold(starts["email"])
    starts["datetime"] = pd.to_datetime(starts["datetime"], utc=True)
    if as_of is None:
        all_times = pd.to_datetime(events["datetime"], utc=True)
        reference = all_times.max() if len(all_times) else pd.Timestamp.now(tz="UTC")
    else:
        reference = _utc(as_of)
    starts = starts[starts["email"].notna() & (starts["email"] != "") & (starts["datetime"] <= reference)]
    grouped = starts.groupby("email").agg(
        started_at=("datetime", "min"), last_started_at=("datetime", "max"), start_events=("datetime", "size")
    ).reset_index()

    people = customers.copy()
    people["email"] = _fold(people["email"])
    people = people[people["email"].notna()]
    if "created_at" in people:
        people = people.sort_values(["created_at", "id"], kind="mergesort")
    people = people.drop_duplicates("email", keep="last")
    first = people["first_name"] if "first_name" in people else pd.Series(None, index=people.index)
    last = people["last_name"] if "last_name" in people else pd.Series(None, index=people.index)
    people["name"] = [_full_name(f, l) for f, l in zip(first, last, strict=True)]
    people["subscribed"] = people["email_subscribed"] if "email_subscribed" in people else pd.NA
    people = people[["email", "id", "name", "box", "schedule", "status", "subscribed", "signup_date"]].rename(
        columns={"id": "customer_id"}
    )

    profiles = grouped.merge(people, on="email", how="left")
    profiles["customer_id"] = profiles["customer_id"].astype("Int64")
    profiles["subscribed"] = profiles["subscribed"].astype("boolean")
    profiles["complete"] = is_complete(profiles)
    profiles["finished"] = profiles["complete"] | profiles["signup_date"].notna()
    profiles["days_since_start"] = (reference - profiles["started_at"]).dt.total_seconds() / 86400
    return profiles[PROFILE_COLUMNS].sort_values(["started_at", "email"], kind="mergesort").reset_index(drop=True)


def in_window(profiles: pd.DataFrame, since: dt.datetime | pd.Timestamp | None) -> pd.DataFrame:
    """People with a start at or after ``since`` (all of them when None)."""
    if since is None:
        return profiles.reset_index(drop=True)
    return profiles[profiles["last_started_at"] >= _utc(since)].reset_index(drop=True)


def stalled_at(profiles: pd.DataFrame) -> pd.Series:
    """Where each person stalled (:data:`STALL_ORDER`); empty for a complete sign-up."""
    labels = pd.Series("", index=profiles.index, dtype="object")
    finished_since = FINISHED_NOW + profiles["status"].astype("string").fillna("?")
    labels = labels.mask(profiles["finished"] & ~profiles["complete"] & (profiles["status"] != "Active"), finished_since)
    labels = labels.mask(profiles["finished"] & ~profiles["complete"] & (profiles["status"] == "Active"), FINISHED_INCOMPLETE)
    labels = labels.mask(~profiles["finished"], AFTER_STEP_1)
    return labels.mask(profiles["customer_id"].isna(), NOT_IN_STORE)


def find_missed_signups(profiles: pd.DataFrame, rules: Sequence[Rule] = DEFAULT_RULES) -> pd.DataFrame:
    """One row per person who matches any rule: the profile's columns, ``stalled_at``, and ``rules``
    (the names of the rules they match, in the ruleset's order, comma-separated)."""
    matched = pd.DataFrame({rule.name: rule.predicate(profiles).fillna(False).astype(bool) for rule in rules}, index=profiles.index)
    hit = matched.any(axis=1) if len(rules) else pd.Series(False, index=profiles.index)
    missed = profiles[hit].copy()
    missed["stalled_at"] = stalled_at(missed)
    names = matched[hit]
    missed["rules"] = pd.Series([", ".join(rule.name for rule in rules if row[rule.name]) for _, row in names.iterrows()],
                                index=missed.index, dtype="object")
    return missed.reset_index(drop=True)


def add_klaviyo_view(missed: pd.DataFrame, klaviyo_profiles: pd.DataFrame) -> pd.DataFrame:
    """The missed signups with what Klaviyo knows, in :data:`MISSED_COLUMNS`: ``suppressed_in_klaviyo``
    (the suppression reasons, empty when none), ``last_activity`` (the profile's last event, or the
    last start), and ``can_email`` / ``not_emailed_because`` (:func:`email_blocker`)."""
    view = klaviyo_profiles[["email", "suppressed", "suppression_reasons", "last_event_date"]].drop_duplicates("email")
    people = missed.merge(view, on="email", how="left")
    suppressed = people["suppressed"].astype("boolean").fillna(False)
    people["suppressed_in_klaviyo"] = people["suppression_reasons"].where(suppressed, "").fillna("")
    people.loc[suppressed & (people["suppressed_in_klaviyo"] == ""), "suppressed_in_klaviyo"] = "cannot receive e-mail marketing"
    activity = pd.concat([pd.to_datetime(people["last_event_date"], utc=True), people["last_started_at"]], axis=1)
    people["last_activity"] = activity.max(axis=1)
    people["not_emailed_because"] = email_blocker(people)
    people["can_email"] = people["not_emailed_because"] == ""
    return people[[*MISSED_COLUMNS, *[c for c in PROFILE_COLUMNS if c not in MISSED_COLUMNS]]]


def email_blocker(people: pd.DataFrame) -> pd.Series:
    """The first reason each person may not be e-mailed (empty when they may): no valid e-mail,
    Dead, unsubscribed in the store, suppressed in Klaviyo, or not in the store (so no consent)."""
    valid = people["email"].map(lambda email: normalize_email(email) is not None)
    reasons = pd.Series("", index=people.index, dtype="object")
    # Filled from the last reason to the first, so the first that holds is the one kept.
    reasons = reasons.mask(people["customer_id"].isna(), NO_CONSENT)
    reasons = reasons.mask(people["suppressed_in_klaviyo"] != "", SUPPRESSED)
    reasons = reasons.mask(people["subscribed"].astype("boolean").eq(False).fillna(False), UNSUBSCRIBED)
    reasons = reasons.mask(people["status"].eq("Dead").fillna(False), DEAD)
    return reasons.mask(~valid, NO_VALID_EMAIL)


def rule_table(missed: pd.DataFrame, rules: Sequence[Rule]) -> pd.DataFrame:
    """Every rule with the people it matches (0 included) and how many of them may be e-mailed."""
    rows = []
    matched = [set(str(names).split(", ")) for names in missed["rules"]]
    for rule in rules:
        hit = pd.Series([rule.name in names for names in matched], index=missed.index, dtype=bool)
        row = {"rule": rule.name, "description": rule.description, "people": int(hit.sum())}
        if "can_email" in missed:
            row["can_email"] = int((hit & missed["can_email"]).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def stalled_table(missed: pd.DataFrame) -> pd.DataFrame:
    """People per step where they stalled, the steps in :data:`STALL_ORDER` (those with nobody left out)."""
    counts = missed["stalled_at"].value_counts()
    order = [label for label in STALL_ORDER if label in counts.index] + sorted(set(counts.index) - set(STALL_ORDER))
    return pd.DataFrame({"stalled_at": order, "people": [int(counts[label]) for label in order]})


@dataclass(frozen=True)
class SignupFunnel:
    #: Per stage (started, completed, still active): ``people`` and ``share`` of those who started.
    stages: pd.DataFrame
    #: Per calendar month (UTC) of the last start, every month of the span (empty ones with 0 people and
    #: no rate): ``month``, ``started``, ``completed``, ``still_active``, ``completed_rate``, ``active_rate``.
    monthly: pd.DataFrame


def signup_funnel(profiles: pd.DataFrame) -> SignupFunnel:
    """Started -> completed (reached the last step) -> still active (status Active now), overall and by month."""
    started = len(profiles)
    completed = int(profiles["finished"].sum())
    active = int((profiles["finished"] & (profiles["status"] == "Active")).sum())
    stages = pd.DataFrame({
        "stage": ["started", "completed", "still active"],
        "people": [started, completed, active],
        "share": [1.0 if started else float("nan"), *(n / started if started else float("nan") for n in (completed, active))],
    })
    frame = profiles[["last_started_at", "finished", "status"]].copy()
    frame["active"] = frame["finished"] & (frame["status"] == "Active")
    if frame.empty:
        months = pd.PeriodIndex([], freq="M")
    else:
        local = frame["last_started_at"].dt.tz_convert("UTC").dt.tz_localize(None)
        frame["month"] = local.dt.to_period("M")
        months = pd.period_range(frame["month"].min(), frame["month"].max(), freq="M")
    grouped = frame.groupby("month").agg(started=("finished", "size"), completed=("finished", "sum"), still_active=("active", "sum")) \
        if not frame.empty else pd.DataFrame(columns=["started", "completed", "still_active"])
    monthly = grouped.reindex(months, fill_value=0).astype(int)
    monthly.index.name = "month"
    monthly = monthly.reset_index()
    monthly["completed_rate"] = monthly["completed"] / monthly["started"].where(monthly["started"] > 0)
    monthly["active_rate"] = monthly["still_active"] / monthly["started"].where(monthly["started"] > 0)
    return SignupFunnel(stages, monthly)


#: A month's completion rate is compared with others' only from this many starts on (a month that has
#: just begun, or a quiet one, would otherwise be "the worst" on two people).
MIN_MONTH_STARTS = 5


def funnel_sentences(funnel: SignupFunnel, missed: pd.DataFrame, window: str) -> list[str]:
    """What the funnel says, for under its figure. ``window`` names the period ("since 2026-09-02")."""
    started, completed, active = (int(n) for n in funnel.stages["people"])
    if not started:
        return [f"Nobody started a sign-up {window}."]
    did_not_finish = started - completed
    never = missed[~missed["finished"]]
    can_email = int(never["can_email"].sum()) if "can_email" in never else 0
    sentences = [
        f"Of {count(started, 'person', 'people')} who started a sign-up {window}, {did_not_finish} "
        f"({pct(did_not_finish, started)}) did not finish; {can_email} of them can be e-mailed.",
        f"{completed} ({pct(completed, started)}) completed it and {active} ({pct(active, started)}) "
        f"{verb(active, 'is', 'are')} still active.",
    ]
    months = funnel.monthly[funnel.monthly["started"] >= MIN_MONTH_STARTS]
    if len(months) >= 2:
        worst = months.sort_values(["completed_rate", "month"]).iloc[0]
        best = months.sort_values(["completed_rate", "month"], ascending=[False, True]).iloc[0]
        sentences.append(
            f"Of the months with at least {MIN_MONTH_STARTS} starts, completion was lowest for starts in "
            f"{worst['month']:%B %Y} ({pct(int(worst['completed']), int(worst['started']))} of {int(worst['started'])}) "
            f"and highest in {best['month']:%B %Y} ({pct(int(best['completed']), int(best['started']))} of {int(best['started'])})."
        )
    return sentences


def stalled_sentences(missed: pd.DataFrame) -> list[str]:
    """Where the missed signups stalled, in a sentence or two."""
    if missed.empty:
        return ["No missed signups: nobody stalled."]
    table = stalled_table(missed)
    top = table.sort_values(["people"], ascending=False, kind="mergesort").iloc[0]
    label = str(top["stalled_at"])
    phrase = STALL_PHRASES.get(label) or (
        f"finished the sign-up and are now {label.removeprefix(FINISHED_NOW)}" if label.startswith(FINISHED_NOW) else label
    )
    sentences = [f"{int(top['people'])} of the {count(len(missed), 'missed signup')} {phrase}."]
    finished = missed[missed["finished"]]
    if len(finished):
        sentences.append(
            f"{count(len(finished), 'person', 'people')} finished the sign-up and later left (the seed's rule counts "
            "them as missed); the win-back push leaves them out."
        )
    return sentences

"""Put an analysis result into a Klaviyo list (e.g. missed signups for a win-back flow), on request only.

:func:`push_to_list` writes to the account only when called with ``push_to_klaviyo=True`` (the
notebooks' parameter of the same name); without it, it reports what it would push, so running a
notebook top to bottom never changes Klaviyo by accident.

:func:`plan_win_back` decides who of the missed signups goes to the win-back list: only people who
never finished the sign-up and may be e-mailed (not Dead, subscribed in the store, not suppressed
in Klaviyo); everyone else is left out with the reason, and the push's summary counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from kl_sync.analysis.missed import DEAD, NO_CONSENT, NO_VALID_EMAIL, SUPPRESSED, UNSUBSCRIBED
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.lists import add_profiles_to_list, create_list
from kl_sync.normalize import normalize_email

WIN_BACK_LIST = "Missed signups (win-back)"
#: Followed by the status: finished the sign-up, so not a missed signup to win back.
FINISHED = "finished the sign-up (now "
REASON_ORDER = (NO_VALID_EMAIL, DEAD, UNSUBSCRIBED, SUPPRESSED, NO_CONSENT)


@dataclass(frozen=True)
class ListPush:
    list_name: str
    #: Folded, de-duplicated e-mails, in first-seen order.
    emails: tuple[str, ...]
    #: Inputs that are not e-mail addresses (left out).
    skipped: tuple[str, ...]
    pushed: bool
    list_id: str | None = None
    #: After a push: e-mails per outcome (``sent``, ``rejected``, ``retry``).
    outcomes: Mapping[str, int] = field(default_factory=dict)
    #: After a push: the e-mails Klaviyo did not take, with its reason.
    failures: tuple[tuple[str, str], ...] = ()
    #: People left out before the push, per reason (from :func:`plan_win_back`).
    left_out: Mapping[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        if self.pushed:
            done = ", ".join(f"{count} {status}" for status, count in sorted(self.outcomes.items()))
            text = f"list {self.list_name!r} ({self.list_id}): {done}"
        else:
            text = (f"{len(self.emails)} people would go to list {self.list_name!r} "
                    "(set push_to_klaviyo = True to push)")
        if self.skipped:
            text += f"; {len(self.skipped)} skipped as not e-mail addresses"
        if self.left_out:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.left_out.items())
            text += f"; left out {sum(self.left_out.values())}: {reasons}"
        return text


def plan_list_push(name: str, emails: Iterable[object], left_out: Mapping[str, int] | None = None) -> ListPush:
    """What :func:`push_to_list` would send: valid e-mails folded and de-duplicated."""
    kept: dict[str, None] = {}
    skipped: list[str] = []
    for raw in emails:
        email = normalize_email(raw)
        if email is None:
            skipped.append(str(raw))
        else:
            kept.setdefault(email, None)
    return ListPush(name, tuple(kept), tuple(skipped), pushed=False, left_out=dict(left_out or {}))


def push_to_list(
    client: KlaviyoClient,
    name: str,
    emails: Iterable[object],
    push_to_klaviyo: bool = False,
    *,
    left_out: Mapping[str, int] | None = None,
) -> ListPush:
    """Add the profiles of ``emails`` to list ``name`` (found or created), only if ``push_to_klaviyo``.

    Repeating a push is harmless: the list is looked up by name and re-adding a member changes nothing.
    ``left_out`` (reason -> people) is only reported.
    """
    plan = plan_list_push(name, emails, left_out)
    if not push_to_klaviyo or not plan.emails:
        return plan
    list_id = create_list(client, name)
    results = add_profiles_to_list(client, list_id, list(plan.emails))
    failures = tuple(
        (email, result.reason or result.status) for email, result in zip(plan.emails, results, strict=True) if result.status != "sent"
    )
    counts = dict(Counter(result.status for result in results))
    return ListPush(plan.list_name, plan.emails, plan.skipped, pushed=True, list_id=list_id, outcomes=counts,
                    failures=failures, left_out=plan.left_out)


@dataclass(frozen=True)
class WinBackPlan:
    #: The missed signups who go to the list (one row each).
    audience: pd.DataFrame
    #: Everyone else of the missed signups, with ``left_out_because``.
    left_out: pd.DataFrame

    def left_out_counts(self) -> dict[str, int]:
        """People left out per reason, the most common first (ties in the reasons' order)."""
        counts = self.left_out["left_out_because"].value_counts()
        rank = {reason: i for i, reason in enumerate(REASON_ORDER)}
        ordered = sorted(counts.items(), key=lambda item: (-item[1], rank.get(item[0], len(rank)), item[0]))
        return {reason: int(count) for reason, count in ordered}


def plan_win_back(missed: pd.DataFrame) -> WinBackPlan:
    """Who of ``missed`` (after :func:`~kl_sync.analysis.missed.add_klaviyo_view`) may get the win-back
    e-mail: they never finished the sign-up and nothing stops e-mailing them."""
    reason = missed["not_emailed_because"].copy()
    finished = missed["finished"].astype(bool) & (reason == "")
    reason = reason.mask(finished, FINISHED + missed["status"].astype("string").fillna("?") + ")")
    people = missed.assign(left_out_because=reason)
    audience = people[people["left_out_because"] == ""].drop(columns="left_out_because").reset_index(drop=True)
    return WinBackPlan(audience, people[people["left_out_because"] != ""].reset_index(drop=True))


def push_win_back(client: KlaviyoClient, plan: WinBackPlan, list_name: str = WIN_BACK_LIST,
                  push_to_klaviyo: bool = False) -> ListPush:
    """:func:`push_to_list` of the plan's audience, reporting who was left out and why."""
    return push_to_list(client, list_name, plan.audience["email"], push_to_klaviyo, left_out=plan.left_out_counts())

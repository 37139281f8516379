"""Put an analysis result into a Klaviyo list (e.g. missed signups for a win-back flow), on request only.

:func:`push_to_list` writes to the account only when called with ``confirm=True``; without it, it
reports what it would push, so running a notebook top to bottom never changes Klaviyo by accident.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.lists import add_profiles_to_list, create_list
from kl_sync.steps.common import normalize_email


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

    def summary(self) -> str:
        if self.pushed:
            done = ", ".join(f"{count} {status}" for status, count in sorted(self.outcomes.items()))
            text = f"list {self.list_name!r} ({self.list_id}): {done}"
        else:
            text = f"{len(self.emails)} profiles would go to list {self.list_name!r} (pass confirm=True to push)"
        return text + (f"; {len(self.skipped)} skipped as not e-mail addresses" if self.skipped else "")


def plan_list_push(name: str, emails: Iterable[object]) -> ListPush:
    """What :func:`push_to_list` would send: valid e-mails folded and de-duplicated."""
    kept: dict[str, None] = {}
    skipped: list[str] = []
    for raw in emails:
        email = normalize_email(raw)
        if email is None:
            skipped.append(str(raw))
        else:
            kept.setdefault(email, None)
    return ListPush(name, tuple(kept), tuple(skipped), pushed=False)


def push_to_list(client: KlaviyoClient, name: str, emails: Iterable[object], confirm: bool = False) -> ListPush:
    """Add the profiles of ``emails`` to list ``name`` (found or created), only if ``confirm`` is True.

    Repeating a push is harmless: the list is looked up by name and re-adding a member changes nothing.
    """
    plan = plan_list_push(name, emails)
    if not confirm or not plan.emails:
        return plan
    list_id = create_list(client, name)
    results = add_profiles_to_list(client, list_id, list(plan.emails))
    failures = tuple(
        (email, result.reason or result.status) for email, result in zip(plan.emails, results, strict=True) if result.status != "sent"
    )
    counts = dict(Counter(result.status for result in results))
    return ListPush(plan.list_name, plan.emails, plan.skipped, pushed=True, list_id=list_id, outcomes=counts, failures=failures)

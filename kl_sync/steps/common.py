"""What the steps share: the customer's current profile, bad rows, step results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row

from kl_sync.normalize import clean_name, email_problem, klaviyo_time, normalize_email
from kl_sync.payloads import ProfilePayload, text_problem
from kl_sync.store.readers import unreadable_problem


class BadRow(ValueError):
    """A store row that cannot become a valid payload; the message is the reason a person acts on."""


def profile_properties(customer: Row[Any] | dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The customer's CURRENT profile properties, as the seed's identify calls set them."""
    c = customer._mapping if isinstance(customer, Row) else customer
    signup = c["signup_date"]
    return {
        "Schedule": c["schedule"],
        "Status": c["status"],
        "Box": c["box"],
        "SignUpDate": klaviyo_time(signup, tz) if signup else None,
        "HasFilledOutProfile": bool(c["has_filled_out_profile"]),
    }


#: The customer's text columns a profile carries, checked for what cannot travel (:func:`text_problem`).
_TEXT_COLUMNS = ("email", "first_name", "last_name", "schedule", "status", "box")


def profile_of(customer: Row[Any] | dict[str, Any], tz: ZoneInfo) -> ProfilePayload:
    """The profile payload for a customer; :class:`BadRow` when they have no usable e-mail."""
    c = customer._mapping if isinstance(customer, Row) else customer
    unreadable = unreadable_problem(c)
    if unreadable is not None:
        raise BadRow(f"customer {c['id']}: {unreadable}")
    for column in _TEXT_COLUMNS:
        value = c[column]
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise BadRow(f"customer {c['id']}: {column} {problem}")
    email = normalize_email(c["email"])
    if email is None:
        raise BadRow(f"customer {c['id']} has {email_problem(c['email'])}")
    return {
        "email": email,
        # The store's id: Klaviyo finds the customer's profile by it when the e-mail changed.
        "external_id": str(c["id"]),
        "first_name": clean_name(c["first_name"]),
        "last_name": clean_name(c["last_name"]),
        "properties": profile_properties(c, tz),
    }


class CustomerProfiles:
    """The profile payload of each customer of a chunk, built once however many of its rows name them.

    ``of`` raises :class:`BadRow` for a customer who is not in the store or has no usable e-mail.
    """

    def __init__(self, rows: dict[int, Row[Any]], tz: ZoneInfo) -> None:
        self._rows = rows
        self._tz = tz
        self._built: dict[int, ProfilePayload | BadRow] = {}

    def of(self, customer_id: int) -> ProfilePayload:
        built = self._built.get(customer_id)
        if built is None:
            customer = self._rows.get(customer_id)
            if customer is None:
                built = BadRow(f"customer {customer_id} is not in the store (deleted?)")
            else:
                try:
                    built = profile_of(customer, self._tz)
                except BadRow as exc:
                    built = exc
            self._built[customer_id] = built
        if isinstance(built, BadRow):
            raise BadRow(str(built))
        return built


#: What a profile is built from (:func:`profile_of`): steps that only build profiles read just these.
PROFILE_COLUMNS = ("id", "email", "first_name", "last_name", "schedule", "status", "box", "signup_date",
                   "has_filled_out_profile")


def is_backfill(event_time: dt.datetime, now: dt.datetime, backfill_after: dt.timedelta) -> bool:
    return event_time < now - backfill_after


@dataclass
class StepResult:
    """What one step did in one run; flows publish these as artifacts, the CLI prints them."""

    step: str
    rows_read: int = 0
    queued: int = 0
    dead_letters: int = 0
    by_metric: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def count_metric(self, metric: str, n: int = 1) -> None:
        self.by_metric[metric] = self.by_metric.get(metric, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rows_read": self.rows_read,
            "queued": self.queued,
            "dead_letters": self.dead_letters,
            "by_metric": dict(sorted(self.by_metric.items())),
            **self.details,
        }

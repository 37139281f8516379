"""Suppression List: customers touched by this run's events whose status is Dead, or who are not
subscribed to e-mail, are suppressed in Klaviyo.

Parse and orders record the customers they touched (in their own transactions); this step (a declared
stream over them, :data:`SUPPRESS`) checks each one's CURRENT row in the store and queues
``suppress:<email>`` — once per e-mail, so a customer
who stays suppressible is not sent again, and one whose e-mail changed is suppressed under the new
one too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from kl_sync.normalize import normalize_email
from kl_sync.payloads import SuppressionPayload
from kl_sync.state.outbox import OutboxItem
from kl_sync.steps.stream import Built, RowBuilder, StepContext, StreamStep, TouchedCustomers

KIND = "suppression"
KEY_PREFIX = "suppress"
#: The seed's rule: these statuses are suppressed whatever the event.
SUPPRESSED_STATUSES = frozenset({"Dead"})


def suppression_key(email: str) -> str:
    return f"{KEY_PREFIX}:{email}"


def should_suppress(customer: Row[Any] | dict[str, Any]) -> bool:
    c = customer._mapping if isinstance(customer, Row) else customer
    return c["status"] in SUPPRESSED_STATUSES or not c["email_subscribed"]


def build_suppression(customer: Row[Any] | dict[str, Any]) -> SuppressionPayload | None:
    """The suppression for a customer the rule catches and who has a usable e-mail; else None. Pure."""
    c = customer._mapping if isinstance(customer, Row) else customer
    email = normalize_email(c["email"])
    if email is None or not should_suppress(c):
        return None
    return {"email": email}


def _prepare(context: StepContext, rows: list[Row[Any]]) -> RowBuilder:
    def build(customer: Row[Any]) -> Built:
        payload = build_suppression(customer)
        if payload is None:
            return Built()
        return Built([OutboxItem(suppression_key(payload["email"]), KIND, payload)])

    return build


#: The seed's Suppression List: every customer the other steps touched, checked against the rule.
SUPPRESS = StreamStep(
    name="suppress",
    source=TouchedCustomers(),
    kinds=(KIND,),
    key_prefix=KEY_PREFIX,
    prepare=_prepare,
    progress_label="customers",
    rows_detail="checked_customers",
)


#: Check every touched customer; queue the suppressions the rule calls for.
suppress_touched = SUPPRESS.run

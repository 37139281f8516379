"""Suppression List: customers touched by this run's events whose status is Dead, or who are not
subscribed to e-mail, are suppressed in Klaviyo.

Parse and orders record the customers they touched (in their own transactions); this step (a declared
stream over them, :data:`SUPPRESS`) checks each one's CURRENT row in the store and queues
``suppress:<email>`` — once per e-mail, so a customer
who stays suppressible is not sent again, and one whose e-mail changed is suppressed under the new
one too. It shares ``customer_emails`` with the customers step (:mod:`kl_sync.steps.customers`, which
sees every changed customer, events or not): an e-mail kl-sync already suppressed is skipped, and one
it suppresses here is recorded, so that a customer who subscribes again is unsuppressed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from kl_sync.normalize import normalize_email
from kl_sync.payloads import SuppressionPayload
from kl_sync.state.customer_emails import EmailState, email_states, record_email_states
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
    with context.state.connect() as conn:
        known = email_states(conn, [], [e for e in (normalize_email(row.email) for row in rows) if e])

    def build(customer: Row[Any]) -> Built:
        payload = build_suppression(customer)
        if payload is None:
            return Built()
        email = payload["email"]
        if email in known and known[email].suppressed:
            return Built()
        key = suppression_key(email)
        known[email] = EmailState(email, customer.id, True, key)
        return Built([OutboxItem(key, KIND, payload)], record=known[email])

    return build


def _record(conn: Connection, states: list[EmailState]) -> None:
    record_email_states(conn, states)


#: The seed's Suppression List: every customer the other steps touched, checked against the rule.
SUPPRESS = StreamStep(
    name="suppress",
    source=TouchedCustomers(),
    kinds=(KIND,),
    key_prefix=KEY_PREFIX,
    prepare=_prepare,
    record=_record,
    progress_label="customers",
    rows_detail="checked_customers",
)


#: Check every touched customer; queue the suppressions the rule calls for.
suppress_touched = SUPPRESS.run

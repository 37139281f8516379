"""Suppression List: customers touched by this run's events whose status is Dead, or who are not
subscribed to e-mail, are suppressed in Klaviyo.

Parse and orders record the customers they touched (in their own transactions); this step checks
each one's CURRENT row in the store and queues ``suppress:<email>`` — once per e-mail, so a customer
who stays suppressible is not sent again, and one whose e-mail changed is suppressed under the new
one too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Row

from kl_sync.payloads import SuppressionPayload
from kl_sync.settings import Settings
from kl_sync.state.outbox import OutboxItem, enqueue
from kl_sync.state.touched import touched_customer_ids, untouch_customers
from kl_sync.normalize import normalize_email
from kl_sync.steps.common import StepResult, load_customers

KIND = "suppression"
#: The seed's rule: these statuses are suppressed whatever the event.
SUPPRESSED_STATUSES = frozenset({"Dead"})


def suppression_key(email: str) -> str:
    return f"suppress:{email}"


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


def suppress_touched(
    store: Engine, state: Engine, settings: Settings, *, run_id: str | None = None, progress: Any = None
) -> StepResult:
    result = StepResult("suppress")
    while True:
        with state.connect() as conn:
            ids = touched_customer_ids(conn, limit=settings.chunk_size)
        if not ids:
            return result
        customers = load_customers(store, ids)
        items = []
        for customer in customers.values():
            payload = build_suppression(customer)
            if payload is not None:
                items.append(OutboxItem(suppression_key(payload["email"]), KIND, payload))
        with state.begin() as conn:
            new = enqueue(conn, items, run_id=run_id)
            untouch_customers(conn, ids)
        result.rows_read += len(ids)
        result.queued += len(new)
        result.details["checked_customers"] = result.rows_read
        if progress is not None:
            progress(len(ids))

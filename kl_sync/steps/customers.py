"""Profiles and consent follow the store: customers changed since the cursor become profile upserts
and, when their consent changed, suppressions or unsuppressions, with or without an event.

The source is the ``customers`` stream (``updated_at``, then id), re-read
``KL_SYNC_CUSTOMERS_LOOKBACK`` before its cursor. Each changed customer with a usable e-mail becomes
``profile:<id>:<updated_at>``: a bulk profile import of its CURRENT attributes, the store's id as
``external_id`` (one Klaviyo profile per customer, whatever its e-mail). A later change is a new key;
a re-read of the same row is the same key, which the outbox skips.

Consent (:func:`plan_consent`), from ``customer_emails`` (every e-mail kl-sync has seen for the
customer, and what kl-sync last asked Klaviyo about it):

- Dead, or not subscribed: every known address of the customer that kl-sync has not suppressed yet is
  suppressed (``profile:<id>:<updated_at>:suppress:<email>``), the old ones after an e-mail change too.
- Subscribed and not Dead: the current address is unsuppressed
  (``profile:<id>:<updated_at>:unsuppress:<email>``) only if kl-sync had suppressed it; Klaviyo then
  lifts only USER_SUPPRESSED, so an unsubscribe or a bounce Klaviyo recorded stays. Old addresses stay
  as they are.

A suppression or unsuppression not yet sent or proven when the next one for its e-mail is queued is
closed as superseded (:func:`~kl_sync.state.delivery.close_superseded`), so a re-send can never undo
the newer one. A customer without an e-mail queues no profile (only its known addresses' consent); a
malformed e-mail is a dead letter ``profile:<id>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row

from kl_sync.normalize import email_problem, normalize_email
from kl_sync.state.customer_emails import EmailState, email_states, record_email_states
from kl_sync.state.delivery import close_superseded
from kl_sync.state.outbox import OutboxItem
from kl_sync.steps.common import BadRow, profile_of
from kl_sync.steps.stream import Built, RowBuilder, StepContext, StoreStream, StreamStep, lookback
from kl_sync.steps.suppress import should_suppress

STREAM = "customers"
KEY_PREFIX = "profile"
PROFILE, SUPPRESSION, UNSUPPRESSION = "profile", "suppression", "unsuppression"
_ACTION_KIND = {"suppress": SUPPRESSION, "unsuppress": UNSUPPRESSION}


def stamp_of(customer: Row[Any] | Mapping[str, Any]) -> str:
    """The customer's change, as its keys carry it: ``updated_at`` in ISO 8601 (store time)."""
    c = customer._mapping if isinstance(customer, Row) else customer
    return c["updated_at"].isoformat()


def profile_key(customer_id: int, stamp: str) -> str:
    return f"{KEY_PREFIX}:{customer_id}:{stamp}"


def consent_key(customer_id: int, stamp: str, action: str, email: str) -> str:
    return f"{profile_key(customer_id, stamp)}:{action}:{email}"


@dataclass
class ConsentPlan:
    """What one customer's row changes: the consent rows to queue, the e-mails' new states, and the
    earlier consent rows the new ones replace (old key -> new key)."""

    items: list[OutboxItem] = field(default_factory=list)
    states: list[EmailState] = field(default_factory=list)
    superseded: dict[str, str] = field(default_factory=dict)


def plan_consent(
    customer_id: int, email: str | None, suppress: bool, known: Mapping[str, EmailState], stamp: str
) -> ConsentPlan:
    """The consent change of one customer (pure): ``email`` is their current normalized address (or
    None), ``suppress`` the store's rule, ``known`` what kl-sync knows of e-mails (theirs and this one)."""
    plan = ConsentPlan()
    mine = {e for e, state in known.items() if state.customer_id == customer_id}
    addresses = sorted(mine | ({email} if email else set()))
    for address in addresses:
        state = known.get(address)
        if suppress and not (state and state.suppressed):
            plan.items.append(_consent_item("suppress", customer_id, stamp, address))
        elif not suppress and address == email and state is not None and state.suppressed:
            plan.items.append(_consent_item("unsuppress", customer_id, stamp, address))
        elif state is None or state.customer_id != customer_id:
            plan.states.append(EmailState(address, customer_id, state.suppressed if state else False,
                                          state.consent_key if state else None))
    for item in plan.items:
        address = item.payload["email"]
        previous = known.get(address)
        if previous is not None and previous.consent_key:
            plan.superseded[previous.consent_key] = item.key
        plan.states.append(EmailState(address, customer_id, item.kind == SUPPRESSION, item.key))
    return plan


def _consent_item(action: str, customer_id: int, stamp: str, email: str) -> OutboxItem:
    return OutboxItem(consent_key(customer_id, stamp, action, email), _ACTION_KIND[action],
                      {"email": email, "customer_id": customer_id})


def _prepare(context: StepContext, rows: list[Row[Any]]) -> RowBuilder:
    """What kl-sync knows of the chunk's customers' e-mails; the builder of one customer's rows."""
    tz = context.settings.tz
    emails = {row.id: normalize_email(row.email) for row in rows}
    with context.state.connect() as conn:
        known = email_states(conn, emails, [e for e in emails.values() if e])

    def build(customer: Row[Any]) -> Built:
        email = emails[customer.id]
        items: list[OutboxItem] = []
        stamp = stamp_of(customer)
        if email is not None:
            items.append(OutboxItem(profile_key(customer.id, stamp), PROFILE, profile_of(customer, tz)))
        elif customer.email is not None and str(customer.email).strip():
            raise BadRow(f"customer {customer.id} has {email_problem(customer.email)}")
        plan = plan_consent(customer.id, email, should_suppress(customer), known, stamp)
        # Later rows of the chunk see this one's e-mails (two customers may share one).
        known.update({state.email: state for state in plan.states})
        return Built(items + plan.items, record=plan)

    return build


def _record(conn: Connection, plans: list[ConsentPlan]) -> None:
    """The e-mails' new states, and the consent rows the new ones replace closed (in the chunk's transaction)."""
    record_email_states(conn, [state for plan in plans for state in plan.states])
    close_superseded(conn, {old: new for plan in plans for old, new in plan.superseded.items() if old != new})


#: Customers changed since the cursor (with a lookback): their profiles, and consent changes.
CUSTOMERS = StreamStep(
    name="customers",
    source=StoreStream(STREAM, rewind=lookback(lambda settings: settings.customers_lookback)),
    kinds=(PROFILE, SUPPRESSION, UNSUPPRESSION),
    key_prefix=KEY_PREFIX,
    prepare=_prepare,
    record=_record,
    progress_label="changed customers",
)


#: Queue the profiles and consent changes of every customer changed since the cursor.
sync_customers = CUSTOMERS.run

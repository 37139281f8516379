"""The ``customer_emails`` table: every e-mail kl-sync has seen for a customer, whether kl-sync last
asked Klaviyo to suppress it, and the key of that last suppression or unsuppression.

The customers step reads it to decide what consent change a customer's row calls for (a customer who
turns Dead has every address of theirs suppressed, one who subscribes again is unsuppressed only if
kl-sync suppressed them) and writes it in the transaction of the rows it queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import utcnow
from kl_sync.state.tables import customer_emails


@dataclass(frozen=True)
class EmailState:
    """One e-mail as kl-sync last left it in Klaviyo."""

    email: str
    customer_id: int | None
    #: kl-sync's last request for it was a suppression (False: an unsuppression, or none yet).
    suppressed: bool
    #: The outbox key of that last suppression or unsuppression.
    consent_key: str | None


def _state(row: object) -> EmailState:
    return EmailState(row.email, row.customer_id, bool(row.suppressed), row.consent_key)  # type: ignore[attr-defined]


def email_states(conn: Connection, customer_ids: Iterable[int], emails: Iterable[str]) -> dict[str, EmailState]:
    """The known e-mails of these customers, and these e-mails whoever they belong to."""
    columns = (customer_emails.c.email, customer_emails.c.customer_id, customer_emails.c.suppressed,
               customer_emails.c.consent_key)
    found: dict[str, EmailState] = {}
    for column, values in ((customer_emails.c.customer_id, sorted(set(customer_ids))),
                           (customer_emails.c.email, sorted(set(emails)))):
        for chunk in chunks(values, IN_LIST_SIZE):
            for row in conn.execute(select(*columns).where(column.in_(chunk))):
                found[row.email] = _state(row)
    return found


def record_email_states(conn: Connection, states: Sequence[EmailState]) -> None:
    """Write these e-mails' states (the last one given for an e-mail wins), in the caller's transaction."""
    latest = {state.email: state for state in states}
    if not latest:
        return
    for chunk in chunks(sorted(latest), IN_LIST_SIZE):
        conn.execute(customer_emails.delete().where(customer_emails.c.email.in_(chunk)))
    now = utcnow()
    conn.execute(customer_emails.insert(), [
        {"email": s.email, "customer_id": s.customer_id, "suppressed": s.suppressed, "consent_key": s.consent_key,
         "changed_at": now}
        for s in latest.values()
    ])


def known_emails(conn: Connection, customer_id: int) -> list[EmailState]:
    """Every e-mail kl-sync has seen for one customer (``kl-sync consent``, tests)."""
    query = select(customer_emails).where(customer_emails.c.customer_id == customer_id).order_by(customer_emails.c.email)
    return [_state(row) for row in conn.execute(query)]

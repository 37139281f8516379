"""The other direction, read only: what Klaviyo knows of consent that the store does not.

:func:`read_consent` reads back the profiles Klaviyo suppressed since the last read (the suppression
time is the cursor, :mod:`kl_sync.state.consent`) into the state database. :func:`consent_report`
lists the customers the store believes subscribed (subscribed to e-mail and not Dead) whom Klaviyo
cannot e-mail, with Klaviyo's reason and date: what the store should act on (``kl-sync consent``,
the run's ``kl-sync-consent`` artifact). kl-sync never writes the store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.klaviyo.consent import iter_suppressed_profiles
from kl_sync.state.consent import consent_cursor, consent_rows, record_consent
from kl_sync.steps.common import StepResult
from kl_sync.steps.suppress import should_suppress
from kl_sync.store.contract import customers

#: Profiles recorded per transaction (the cursor moves with each).
READ_CHUNK = 1000


def read_consent(state: Engine, client: Any) -> StepResult:
    """Read Klaviyo's suppressions since the cursor into ``klaviyo_consent``; rows_read = profiles read."""
    result = StepResult("consent")
    with state.connect() as conn:
        since = consent_cursor(conn)
    pending: list[Any] = []
    for found in iter_suppressed_profiles(client, since):
        pending.append(found)
        if len(pending) >= READ_CHUNK:
            _commit(state, pending, result)
    _commit(state, pending, result)
    return result


def _commit(state: Engine, rows: list[Any], result: StepResult) -> None:
    if rows:
        with state.begin() as conn:
            record_consent(conn, rows)
        result.rows_read += len(rows)
        rows.clear()


def consent_report(state: Engine, store: Engine) -> list[dict[str, Any]]:
    """Customers the store believes subscribed whom Klaviyo cannot e-mail: customer_id, email,
    reason, suppressed_at (UTC), one row per customer and address, by customer id."""
    with state.connect() as conn:
        blocked = consent_rows(conn)
    by_email = {row["email"]: row for row in blocked}
    by_customer = {row["external_id"]: row for row in blocked if row["external_id"]}
    found: dict[tuple[int, str], dict[str, Any]] = {}
    columns = (customers.c.id, customers.c.email, customers.c.status, customers.c.email_subscribed)
    ids = sorted({int(r["external_id"]) for r in blocked if str(r["external_id"] or "").isdigit()})
    with store.connect() as conn:
        for column, values in ((customers.c.id, ids), (customers.c.email, sorted(by_email))):
            for chunk in chunks(values, IN_LIST_SIZE):
                for customer in conn.execute(select(*columns).where(column.in_(chunk))):
                    if should_suppress(customer):
                        continue
                    email = str(customer.email or "").strip().lower()
                    row = by_email.get(email) or by_customer.get(str(customer.id))
                    if row is not None:
                        found[(customer.id, row["email"])] = {
                            "customer_id": customer.id, "email": row["email"], "reason": row["reason"],
                            "suppressed_at": row["suppressed_at"].isoformat() if row["suppressed_at"] else None}
    return [found[key] for key in sorted(found)]

"""The ``touched_customers`` table: customers whose events were queued and whose consent the
suppress step has still to check."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.codec import utcnow
from kl_sync.state.inserts import bound, insert_ignoring_duplicates
from kl_sync.state.tables import touched_customers


def touch_customers(conn: Connection, customer_ids: Iterable[int]) -> None:
    """Remember customers to check against the suppression rule (in the caller's transaction)."""
    now = bound(conn, touched_customers.c.touched_at, utcnow())
    rows = [(cid, now) for cid in sorted(set(customer_ids))]
    insert_ignoring_duplicates(conn, touched_customers, ("customer_id", "touched_at"), rows, "customer_id")


def touched_customer_ids(conn: Connection, *, limit: int) -> list[int]:
    query = select(touched_customers.c.customer_id).order_by(touched_customers.c.customer_id).limit(limit)
    return list(conn.execute(query).scalars())


def untouch_customers(conn: Connection, customer_ids: Sequence[int]) -> None:
    for chunk in chunks(customer_ids, IN_LIST_SIZE):
        conn.execute(touched_customers.delete().where(touched_customers.c.customer_id.in_(chunk)))

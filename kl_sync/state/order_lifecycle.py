"""The ``order_state`` table: what kl-sync has queued for each order (Placed, then Cancelled or
Completed), so the orders step knows which event an order needs next.

Two runs may record the same order at once (overlapping runs, a re-read): every write is an upsert
that only moves an order forward (Placed → Cancelled or Completed, never back), so whichever
commits second neither fails on the primary key nor undoes the first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.inserts import binder, insert_ignoring_duplicates
from kl_sync.state.tables import order_state

#: The status of an order whose Placed Order (and lines) were queued and nothing after.
PLACED = "Placed"
_COLUMNS = ("order_id", "customer_id", "status", "total", "placed_key", "final_key", "updated_at")


def known_states(conn: Connection, order_ids: Sequence[int]) -> dict[int, str]:
    """The status last acted on, for those of ``order_ids`` kl-sync has queued events for."""
    known: dict[int, str] = {}
    for chunk in chunks(order_ids, IN_LIST_SIZE):
        rows = conn.execute(select(order_state.c.order_id, order_state.c.status).where(order_state.c.order_id.in_(chunk)))
        known.update({r.order_id: r.status for r in rows})
    return known


def record_states(conn: Connection, new_states: list[dict[str, Any]], moved_states: list[dict[str, Any]]) -> None:
    """Record what was queued for each order (inside the chunk's transaction): ``new_states`` for
    orders seen for the first time, ``moved_states`` for orders whose final event was queued now.

    An order another run recorded meanwhile keeps its row; a final status moves only an order
    still ``Placed`` (the final event's key is deterministic, so either run's is the same)."""
    if new_states:
        bind = [binder(conn, order_state.c[name]) for name in _COLUMNS]
        rows = [tuple(b(state.get(name)) for b, name in zip(bind, _COLUMNS, strict=True)) for state in new_states]
        insert_ignoring_duplicates(conn, order_state, _COLUMNS, rows, "order_id")
    for state_row in [*new_states, *moved_states]:
        if state_row["status"] == PLACED:
            continue
        conn.execute(
            update(order_state)
            .where(order_state.c.order_id == state_row["order_id"], order_state.c.status == PLACED)
            .values(status=state_row["status"], final_key=state_row["final_key"], updated_at=state_row["updated_at"])
        )

"""The ``order_state`` table: what kl-sync has queued for each order (Placed, then Cancelled or
Completed), so the orders step knows which event an order needs next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.state.tables import order_state


def known_states(conn: Connection, order_ids: Sequence[int]) -> dict[int, str]:
    """The status last acted on, for those of ``order_ids`` kl-sync has queued events for."""
    known: dict[int, str] = {}
    for chunk in chunks(order_ids, IN_LIST_SIZE):
        rows = conn.execute(select(order_state.c.order_id, order_state.c.status).where(order_state.c.order_id.in_(chunk)))
        known.update({r.order_id: r.status for r in rows})
    return known


def record_states(conn: Connection, new_states: list[dict[str, Any]], moved_states: list[dict[str, Any]]) -> None:
    """Record what was queued for each order (inside the chunk's transaction): ``new_states`` for
    orders seen for the first time, ``moved_states`` for orders whose final event was queued now."""
    if new_states:
        conn.execute(insert(order_state), new_states)
    for state_row in moved_states:
        conn.execute(
            update(order_state)
            .where(order_state.c.order_id == state_row["order_id"])
            .values(status=state_row["status"], final_key=state_row["final_key"], updated_at=state_row["updated_at"])
        )

"""kl-sync's own database, one module per table: ``cursors``, ``outbox``, ``touched``,
``order_lifecycle``, ``dead_letters``, ``runs``, ``locks`` (and ``rate_limit``'s two tables); ``delivery`` is
the outbox's verification (what "delivered" means); ``tables`` is the schema, ``migrate`` applies its
Alembic migrations, ``codec`` and ``inserts`` are what they share.

Every read or write of a state table lives in this package. The names below are the operations the
rest of kl-sync (and an operator's script) use; each is defined in its table's module.
"""

from kl_sync.state.codec import dumps, loads, utcnow
from kl_sync.state.cursors import all_cursors, get_cursor, parse_cursor_datetime, reset_cursor, set_cursor
from kl_sync.state.dead_letters import (
    Selection,
    add_dead_letter,
    add_dead_letters,
    dead_letter_keys,
    discard_letters,
    letter_counts,
    letters_by_reason,
    list_dead_letters,
    mark_dead,
    select_letters,
)
from kl_sync.state.delivery import delivery_counts, mark_delivered, record_accepted, revive_dead
from kl_sync.state.migrate import current_revision, head_revision, open_state, upgrade
from kl_sync.state.order_lifecycle import known_states, record_states
from kl_sync.state.outbox import (
    ClaimedItem,
    OutboxItem,
    claim,
    enqueue,
    existing_keys,
    iter_pending,
    mark_retry,
    mark_sent,
    outbox_counts,
    pending_count,
    pending_rows,
    release,
    stuck_leases,
)
from kl_sync.state.runs import finish_run, recent_runs, start_run
from kl_sync.state.touched import touch_customers, touched_customer_ids, untouch_customers

__all__ = [
    "ClaimedItem",
    "OutboxItem",
    "Selection",
    "add_dead_letter",
    "add_dead_letters",
    "all_cursors",
    "claim",
    "current_revision",
    "dead_letter_keys",
    "delivery_counts",
    "discard_letters",
    "dumps",
    "enqueue",
    "existing_keys",
    "finish_run",
    "get_cursor",
    "head_revision",
    "iter_pending",
    "known_states",
    "letter_counts",
    "letters_by_reason",
    "list_dead_letters",
    "loads",
    "mark_dead",
    "mark_delivered",
    "mark_retry",
    "mark_sent",
    "open_state",
    "outbox_counts",
    "parse_cursor_datetime",
    "pending_count",
    "pending_rows",
    "recent_runs",
    "record_accepted",
    "record_states",
    "release",
    "reset_cursor",
    "revive_dead",
    "set_cursor",
    "select_letters",
    "start_run",
    "stuck_leases",
    "touch_customers",
    "touched_customer_ids",
    "untouch_customers",
    "upgrade",
    "utcnow",
]

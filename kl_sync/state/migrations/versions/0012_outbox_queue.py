"""The outbox's claim index in queue order: ``(status, id)`` in place of ``(status, next_attempt_at)``.

A claim takes the oldest due pending rows (``ORDER BY id LIMIT n``). Over ``(status, next_attempt_at)``
SQLite read every due pending row and sorted them all to keep the first ``n`` (~0.1 s a claim at
217,000 pending rows, growing with the queue; its UPDATE went through the same index, not the primary
key). Over ``(status, id)`` it walks the pending rows in id order and stops at the ``n``-th due one.
No query needs ``next_attempt_at`` in an index: it filters the pending rows this one finds.

The index holds only the pending rows on SQLite and PostgreSQL (partial; MariaDB/MySQL have no partial
indexes): as a whole ``(status, id)`` index, SQLite's planner took it for the rows due for verification
too (``status = 'sent' ... ORDER BY id``), walking every sent row while none was due (~140 ms at 219,000).

What it costs: rows not yet due at the head of the queue (retries waiting out an outage, lines
deferred for their order) are walked too, ~0.6 µs each (a 20,000-row claim behind 200,000 of them:
0.12 s, against 0.02 s over the old index).

Revision ID: 0012_outbox_queue
Revises: 0011_letter_units
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_outbox_queue"
down_revision = "0011_letter_units"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pending = sa.text("status = 'pending'")
    op.create_index("ix_outbox_queue", "outbox", ["status", "id"], sqlite_where=pending, postgresql_where=pending)
    op.drop_index("ix_outbox_claim", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_claim", "outbox", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_queue", table_name="outbox")

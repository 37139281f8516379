"""The outbox's claim index in queue order: ``(status, id)`` in place of ``(status, next_attempt_at)``.

A claim takes the oldest due pending rows (``ORDER BY id LIMIT n``). Over ``(status, next_attempt_at)``
SQLite read every due pending row and sorted them all to keep the first ``n`` (~0.1 s a claim at
217,000 pending rows, growing with the queue; its UPDATE went through the same index, not the primary
key). Over ``(status, id)`` it walks the pending rows in id order and stops at the ``n``-th due one.
No query needs ``next_attempt_at`` in an index: it filters the pending rows this one finds.

Revision ID: 0012_outbox_queue
Revises: 0011_letter_units
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012_outbox_queue"
down_revision = "0011_letter_units"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_queue", "outbox", ["status", "id"])
    op.drop_index("ix_outbox_claim", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_claim", "outbox", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_queue", table_name="outbox")

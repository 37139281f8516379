"""The outbox's claim index in queue order: ``(status, id)`` in place of ``(status, next_attempt_at)``.

A claim takes the oldest due pending rows (``ORDER BY id LIMIT n``). Over ``(status, next_attempt_at)``
SQLite read every due pending row and sorted them all to keep the first ``n`` (~0.1 s a claim at
217,000 pending rows, growing with the queue; its UPDATE went through the same index, not the primary
key). Over ``(status, id)`` it walks the pending rows in id order and stops at the ``n``-th due one.
No query needs ``next_attempt_at`` in an index: it filters the pending rows this one finds.

What it costs: rows not yet due at the head of the queue (retries waiting out an outage, lines
deferred for their order) are walked too, ~0.6 µs each (a 20,000-row claim behind 200,000 of them:
0.12 s, against 0.02 s over the old index). SQLite's planner also takes this index for the rows due
for verification (``status = 'sent' ... ORDER BY id``): faster once they are due (27 against 138 ms
at 219,000 sent rows), slower while none is (~140 ms, where ``ix_outbox_verify`` found nothing at
once; the nothing-new sync after an initial one 1.17 -> 1.29 s). The index partial over the pending
rows (SQLite, PostgreSQL) kept verification on ``ix_outbox_verify``, but the store-reading process
then peaked ~2.7 MB higher in every initial sync (benchmark 4: 401 MB, over its 400), so it is whole.

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

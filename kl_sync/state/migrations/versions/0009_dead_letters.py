"""Dead letters with a lifecycle: ``open``, ``replayed``, ``resolved`` or ``discarded``.

``status`` (``open`` until something happens to the letter), ``replayed_run_id`` (the run that
replayed it, beside the existing ``replayed_at``), ``resent_at`` (when Klaviyo accepted its replayed
key: sent, not yet proven), ``resolved_at`` / ``resolved_run_id`` (its key was delivered),
``discarded_at`` and ``note`` (a person gave up on it, and why). Letters already replayed become
``replayed``; a letter whose key the outbox already holds verified is ``resolved`` at that time.

Revision ID: 0009_dead_letters
Revises: 0007_customers
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009_dead_letters"
down_revision = "0007_customers"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

dead_letters = sa.table(
    "dead_letters",
    sa.column("key", sa.String(255)),
    sa.column("status", sa.String(16)),
    sa.column("replayed_at", Timestamp),
    sa.column("resolved_at", Timestamp),
    sa.column("discarded_at", Timestamp),
)
outbox = sa.table(
    "outbox",
    sa.column("key", sa.String(255)),
    sa.column("status", sa.String(16)),
    sa.column("verified_at", Timestamp),
)


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("status", sa.String(16), nullable=False, server_default="open"))
    op.add_column("dead_letters", sa.Column("replayed_run_id", sa.String(36)))
    op.add_column("dead_letters", sa.Column("resent_at", Timestamp))
    op.add_column("dead_letters", sa.Column("resolved_at", Timestamp))
    op.add_column("dead_letters", sa.Column("resolved_run_id", sa.String(36)))
    op.add_column("dead_letters", sa.Column("discarded_at", Timestamp))
    op.add_column("dead_letters", sa.Column("note", sa.Text()))
    op.create_index("ix_dead_letters_status", "dead_letters", ["status", "created_at"])
    conn = op.get_bind()
    conn.execute(sa.update(dead_letters).where(dead_letters.c.replayed_at.is_not(None)).values(status="replayed"))
    verified = sa.select(outbox.c.verified_at).where(outbox.c.key == dead_letters.c.key, outbox.c.status == "verified")
    conn.execute(
        sa.update(dead_letters)
        .where(sa.exists(verified))
        .values(status="resolved", resolved_at=verified.scalar_subquery())
    )


def downgrade() -> None:
    # Before this revision a letter left the open list when replayed: every closed one counts as that.
    conn = op.get_bind()
    conn.execute(
        sa.update(dead_letters)
        .where(dead_letters.c.status != "open", dead_letters.c.replayed_at.is_(None))
        .values(replayed_at=sa.func.coalesce(dead_letters.c.resolved_at, dead_letters.c.discarded_at))
    )
    op.drop_index("ix_dead_letters_status", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        for column in ("note", "discarded_at", "resolved_run_id", "resolved_at", "resent_at", "replayed_run_id",
                       "status"):
            batch.drop_column(column)

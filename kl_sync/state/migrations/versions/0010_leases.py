"""Overlapping runs and dead workers: the ``locks`` table and each run's heartbeat.

``locks``: named locks in the state database (the store-reading steps take ``store``), one row per
lock held: the run holding it, since when, and its last heartbeat; a lock whose heartbeat is old
belongs to a dead run and may be taken over. ``runs.heartbeat_at``: when a running run last said
it was alive (a ``running`` run with an old heartbeat was killed: the next run records it
``abandoned``).

Revision ID: 0010_leases
Revises: 0009_dead_letters
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010_leases"
down_revision = "0009_dead_letters"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("heartbeat_at", Timestamp))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
    op.drop_table("locks")

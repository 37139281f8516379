"""The shared rate limiter's tables: one lock row per endpoint, and the send times of recent requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_limit_endpoints",
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("acquisitions", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "rate_limit_sends",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_rate_limit_sends_endpoint_sent_at", "rate_limit_sends", ["endpoint", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_sends_endpoint_sent_at", table_name="rate_limit_sends")
    op.drop_table("rate_limit_sends")
    op.drop_table("rate_limit_endpoints")

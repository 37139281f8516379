"""Customers touched by parse / orders, waiting for the suppression check.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "touched_customers",
        sa.Column("customer_id", Id, primary_key=True, autoincrement=False),
        sa.Column("touched_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("touched_customers")

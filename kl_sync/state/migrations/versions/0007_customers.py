"""Profiles and consent follow the store: what the customers step and the consent read-back keep.

``customer_emails``: every e-mail kl-sync has seen for a customer, whether kl-sync last asked Klaviyo
to suppress it, and the key of that last suppression or unsuppression (a later one closes it).
``klaviyo_consent``: what Klaviyo says about the e-mails it cannot send marketing to (the consent
read-back, ``kl-sync consent``). Suppressions the suppress step queued before this revision
(``suppress:<email>`` rows) are carried over as suppressed e-mails of an unknown customer, so a
customer who subscribes again is unsuppressed.

Revision ID: 0007_customers
Revises: 0005_verify
Create Date: 2026-12-06
"""

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007_customers"
down_revision = "0005_verify"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_BATCH = 5_000

outbox = sa.table(
    "outbox",
    sa.column("id", sa.BigInteger()),
    sa.column("key", sa.String(255)),
    sa.column("kind", sa.String(32)),
    sa.column("payload", sa.Text()),
    sa.column("created_at", Timestamp),
)


def upgrade() -> None:
    emails = op.create_table(
        "customer_emails",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("customer_id", Id),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("consent_key", sa.String(255)),
        sa.Column("changed_at", Timestamp, nullable=False),
    )
    op.create_index("ix_customer_emails_customer", "customer_emails", ["customer_id"])
    op.create_table(
        "klaviyo_consent",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("profile_id", sa.String(64)),
        sa.Column("external_id", sa.String(255)),
        sa.Column("reason", sa.String(32)),
        sa.Column("suppressed_at", Timestamp),
        sa.Column("can_receive", sa.Boolean(), nullable=False),
        sa.Column("read_at", Timestamp, nullable=False),
    )
    _carry_suppressions_over(op.get_bind(), emails)


def _carry_suppressions_over(conn: sa.Connection, emails: sa.Table) -> None:
    seen: set[str] = set()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.key, outbox.c.payload, outbox.c.created_at)
            .where(outbox.c.kind == "suppression", outbox.c.id > after).order_by(outbox.c.id).limit(_BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        new = []
        for _, key, payload, created_at in rows:
            try:
                email = json.loads(payload).get("email")
            except (ValueError, AttributeError):
                continue
            if isinstance(email, str) and email.strip() and email.strip().lower() not in seen:
                seen.add(email.strip().lower())
                new.append({"email": email.strip().lower()[:320], "customer_id": None, "suppressed": True,
                            "consent_key": key, "changed_at": created_at})
        if new:
            conn.execute(sa.insert(emails), new)


def downgrade() -> None:
    op.drop_table("klaviyo_consent")
    op.drop_index("ix_customer_emails_customer", table_name="customer_emails")
    op.drop_table("customer_emails")

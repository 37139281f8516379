"""Delivery you can prove: what the verify step needs on each outbox row.

``metric`` and ``event_time`` (an event's Klaviyo metric and its own time, naive UTC: what the verify
step reads Klaviyo back by), ``sends`` (how many times Klaviyo accepted the row with a 2xx),
``checked_at`` (when verification last looked for it and did not find it) and ``verified_at`` (when it
was found: status ``verified``). Rows already in the outbox get their metric and time from their
payloads, and rows already sent count one send.

Revision ID: 0005_verify
Revises: 0003
Create Date: 2026-12-02
"""

import datetime as dt
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005_verify"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_BATCH = 5_000

outbox = sa.table(
    "outbox",
    sa.column("id", sa.BigInteger()),
    sa.column("payload", sa.Text()),
    sa.column("status", sa.String(16)),
    sa.column("metric", sa.String(128)),
    sa.column("event_time", Timestamp),
    sa.column("sends", sa.Integer()),
)


def _facts(payload_text: str) -> tuple[str | None, dt.datetime | None]:
    """A payload's metric and time (naive UTC), as kl_sync.state.outbox.event_facts read them when
    this revision was written (kept here: a migration must not change when the code does)."""
    try:
        payload = json.loads(payload_text)
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    metric = payload.get("metric")
    metric = metric[:128] if isinstance(metric, str) else None
    when = None
    if isinstance(payload.get("time"), str):
        try:
            parsed = dt.datetime.fromisoformat(payload["time"])
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            when = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return metric, when


def upgrade() -> None:
    op.add_column("outbox", sa.Column("metric", sa.String(128)))
    op.add_column("outbox", sa.Column("event_time", Timestamp))
    op.add_column("outbox", sa.Column("sends", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("outbox", sa.Column("checked_at", Timestamp))
    op.add_column("outbox", sa.Column("verified_at", Timestamp))
    op.create_index("ix_outbox_verify", "outbox", ["status", "sent_at"])
    op.create_index("ix_outbox_metric_time", "outbox", ["metric", "event_time"])
    conn = op.get_bind()
    conn.execute(sa.update(outbox).where(outbox.c.status == "sent").values(sends=1))
    after = 0
    while True:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.payload).where(outbox.c.id > after).order_by(outbox.c.id).limit(_BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1][0]
        facts = [(row_id, *_facts(text)) for row_id, text in rows]
        facts = [{"row_id": row_id, "m": metric, "t": when} for row_id, metric, when in facts if metric or when]
        if facts:
            conn.execute(
                sa.update(outbox).where(outbox.c.id == sa.bindparam("row_id"))
                .values(metric=sa.bindparam("m"), event_time=sa.bindparam("t")),
                facts,
            )


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.update(outbox).where(outbox.c.status == "verified").values(status="sent"))
    op.drop_index("ix_outbox_metric_time", table_name="outbox")
    op.drop_index("ix_outbox_verify", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        for column in ("verified_at", "checked_at", "sends", "event_time", "metric"):
            batch.drop_column(column)

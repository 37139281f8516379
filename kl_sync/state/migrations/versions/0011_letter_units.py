"""A dead letter's unit: the store row its key was built from (``order:5`` for ``order:5:item:7``,
``profile:3`` for ``profile:3:<updated_at>``), indexed, so delivering any key finds the letters it may
settle in one lookup: its own, its row's, and an earlier build of the same thing (a profile of the
customer's previous change). Existing letters get theirs from their keys.

Revision ID: 0011_letter_units
Revises: 0010_leases
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_letter_units"
down_revision = "0010_leases"
branch_labels = None
depends_on = None

_BATCH = 5_000

dead_letters = sa.table("dead_letters", sa.column("id", sa.BigInteger()), sa.column("key", sa.String(255)),
                        sa.column("unit", sa.String(255)))


def _unit_of(key: str) -> str:
    """kl_sync.state.dead_letters.unit_of as this revision was written (a migration must not change
    when the code does): the key's first two parts."""
    prefix, _, rest = key.partition(":")
    return f"{prefix}:{rest.partition(':')[0]}" if rest else key


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("unit", sa.String(255)))
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(sa.select(dead_letters.c.id, dead_letters.c.key).where(dead_letters.c.id > after)
                            .order_by(dead_letters.c.id).limit(_BATCH)).all()
        if not rows:
            break
        after = rows[-1][0]
        conn.execute(sa.update(dead_letters).where(dead_letters.c.id == sa.bindparam("row_id"))
                     .values(unit=sa.bindparam("u")), [{"row_id": i, "u": _unit_of(key)} for i, key in rows])
    with op.batch_alter_table("dead_letters") as batch:
        batch.alter_column("unit", existing_type=sa.String(255), nullable=False)
    op.create_index("ix_dead_letters_unit", "dead_letters", ["unit"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_unit", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("unit")

"""reorg re-check: job.generation, job.recheck_until, update_outbox.held

Created 2026-11-28 12:00.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("recheck_until", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("update_outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("update_outbox", schema=None) as batch_op:
        batch_op.drop_column("held")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("recheck_until")
        batch_op.drop_column("generation")

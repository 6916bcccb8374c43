"""output_file.content nullable (files live in the output file store); update_outbox.split_group
(a batch that reverted on-chain is split, each half sent on its own)

Created 2026-11-30 15:00.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_outputs"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("output_file", schema=None) as batch_op:
        batch_op.alter_column("content", existing_type=sa.LargeBinary(), nullable=True)
    with op.batch_alter_table("update_outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("split_group", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("update_outbox", schema=None) as batch_op:
        batch_op.drop_column("split_group")
    with op.batch_alter_table("output_file", schema=None) as batch_op:
        batch_op.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)

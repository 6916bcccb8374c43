"""remote_cancel: the outbox of remote jobs to cancel

Created 2026-11-28 09:00.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "remote_cancel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("remote_job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("remote_cancel", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_remote_cancel_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_remote_cancel_done_at"), ["done_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("remote_cancel", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_remote_cancel_done_at"))
        batch_op.drop_index(batch_op.f("ix_remote_cancel_job_id"))
    op.drop_table("remote_cancel")

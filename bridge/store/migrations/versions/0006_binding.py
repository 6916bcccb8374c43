"""binding (the database's one chain id and contract); dispatch_control (the stored pause)

Created 2026-11-30 14:30.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_binding"
down_revision = "0005_outputs"


def upgrade() -> None:
    op.create_table(
        "binding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("bound_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dispatch_control",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("dispatch_control")
    op.drop_table("binding")

"""chain_tx.fee_paid_wei and chain_tx.l1_fee_wei: what each mined write cost (gas + OP L1 fee)

Created 2026-11-30 15:20.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_networks"
down_revision = "0007_scale"


def upgrade() -> None:
    with op.batch_alter_table("chain_tx") as batch:
        batch.add_column(sa.Column("fee_paid_wei", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("l1_fee_wei", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chain_tx") as batch:
        batch.drop_column("l1_fee_wei")
        batch.drop_column("fee_paid_wei")

"""job and remote_cancel leases (holder, expiry): CE work claimed per job by one process

Created 2026-11-30 15:20.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_scale"
down_revision = "0006_binding"

_TABLES = ("job", "remote_cancel")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("lease_holder", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch.add_column(sa.Column("lease_expires", sa.Float(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lease_expires")
            batch.drop_column("lease_holder")

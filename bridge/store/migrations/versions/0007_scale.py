"""job and remote_cancel leases (holder, expiry): CE work claimed per job by one process

Revision ID: 0007_scale
Revises: 0006_binding
Create Date: 2026-11-30 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_scale"
down_revision = "0006_binding"
branch_labels = None
depends_on = None

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

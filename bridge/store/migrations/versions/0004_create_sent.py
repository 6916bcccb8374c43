"""job.create_sent_at; remote_cancel.idempotency_key and request_json (cancel by key)

Created 2026-11-28 14:00.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("create_sent_at", sa.Float(), nullable=True))
    with op.batch_alter_table("remote_cancel", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("request_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("remote_cancel", schema=None) as batch_op:
        batch_op.drop_column("request_json")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("create_sent_at")

"""binding (the database's one chain id and contract); dispatch_control (the stored pause)

Created 2026-11-30 14:30.
"""

import sqlalchemy as sa

from bridge.store.migrations.tables import BIGINT, BOOL, INT, STR, TIME, create_table, drop_table

revision = "0006_binding"
down_revision = "0005_outputs"


def upgrade() -> None:
    create_table(
        "binding",
        {
            "id": INT,
            "chain_id": BIGINT,
            "contract": STR,
            "bound_at": TIME,
        },
        sa.PrimaryKeyConstraint("id"),
    )
    create_table(
        "dispatch_control",
        {
            "id": INT,
            "paused": BOOL,
            "changed_at": TIME,
        },
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    drop_table("dispatch_control")
    drop_table("binding")

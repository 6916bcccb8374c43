"""remote_cancel: the outbox of remote jobs to cancel

Created 2026-11-28 09:00.
"""

import sqlalchemy as sa

from bridge.store.migrations.tables import BIGINT, FLOAT, INT, STR, TIME, create_table, drop_table

revision = "0002"
down_revision = "0001"

_INDEXED = ("job_id", "done_at")


def upgrade() -> None:
    create_table(
        "remote_cancel",
        {
            "id": INT,
            "job_id": BIGINT,
            "remote_job_id": STR,
            "reason": STR,
            "attempts": INT,
            "next_attempt_at": FLOAT,
            "last_error": STR | None,
            "done_at": TIME | None,
            "created_at": TIME,
        },
        sa.PrimaryKeyConstraint("id"),
        indexed=_INDEXED,
    )


def downgrade() -> None:
    drop_table("remote_cancel", _INDEXED)

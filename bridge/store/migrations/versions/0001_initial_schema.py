"""initial schema

Created 2026-11-27 22:03.
"""

import sqlalchemy as sa

from bridge.store.migrations.tables import (
    BIGINT,
    BOOL,
    BYTES,
    FLOAT,
    INT,
    STR,
    TEXT,
    TIME,
    ColumnType,
    create_table,
    drop_table,
)

revision = "0001"
down_revision = None

#: The tables in the order they are created, each with its indexed columns (an index
#: ``ix_<table>_<column>`` each); downgrade drops them in the reverse order.
_INDEXED: dict[str, tuple[str, ...]] = {
    "chain_tx": ("sender", "state"),
    "job": ("block_number", "requester", "state"),
    "output_file": ("job_id",),
    "remote_call": ("job_id",),
    "scan_cursor": (),
    "seen_block": (),
    "update_outbox": ("job_id", "tx_id"),
}


def _create_table(
    table: str, types_by_name: dict[str, ColumnType], *constraints: sa.schema.SchemaItem
) -> None:
    create_table(table, types_by_name, *constraints, indexed=_INDEXED[table])


def upgrade() -> None:
    _create_table(
        "chain_tx",
        {
            "id": INT,
            "sender": STR,
            "nonce": BIGINT,
            "attempt": INT,
            "hashes": STR,
            "state": STR,
            "raw_tx": STR | None,
            "tx_hash": STR | None,
            "max_fee_per_gas": BIGINT,
            "max_priority_fee_per_gas": BIGINT,
            "gas_limit": INT,
            "broadcast_at": FLOAT | None,
            "mined_block": BIGINT | None,
            "mined_block_hash": STR | None,
            "gas_used": INT | None,
            "error": STR | None,
            "created_at": TIME,
        },
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "nonce"),
    )
    _create_table(
        "job",
        {
            "job_id": BIGINT,
            "requester": STR,
            "spec_json": TEXT,
            "spec_hash": STR,
            "spec_error": STR | None,
            "payment_wei": STR,
            "deadline": BIGINT,
            "callback_gas_limit": INT,
            "block_number": BIGINT,
            "block_hash": STR,
            "tx_hash": STR,
            "log_index": INT,
            "state": STR,
            "onchain_status": INT,
            "cancel_requested": BOOL,
            "remote_job_id": STR | None,
            "remote_status": STR | None,
            "remote_error": STR | None,
            "result_hash": STR | None,
            "result_uri": STR | None,
            "outcome": INT | None,
            "reason": STR | None,
            "attempts": INT,
            "next_attempt_at": FLOAT,
            "created_at": TIME,
            "updated_at": TIME,
        },
        sa.PrimaryKeyConstraint("job_id"),
    )
    _create_table(
        "output_file",
        {
            "id": INT,
            "job_id": BIGINT,
            "path": STR,
            "sha256": STR,
            "size": INT,
            "content": BYTES,
        },
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "path"),
    )
    _create_table(
        "remote_call",
        {
            "id": INT,
            "job_id": BIGINT,
            "kind": STR,
            "ok": BOOL,
            "detail": STR | None,
            "at": TIME,
        },
        sa.PrimaryKeyConstraint("id"),
    )
    _create_table(
        "scan_cursor",
        {
            "contract": STR,
            "block": BIGINT,
            "updated_at": TIME,
        },
        sa.PrimaryKeyConstraint("contract"),
    )
    _create_table(
        "seen_block",
        {
            "contract": STR,
            "number": BIGINT,
            "hash": STR,
        },
        sa.PrimaryKeyConstraint("contract", "number"),
    )
    _create_table(
        "update_outbox",
        {
            "id": INT,
            "job_id": BIGINT,
            "status": INT,
            "result_hash": STR,
            "data": STR,
            "tx_id": INT | None,
            "applied": BOOL | None,
            "skip_reason": STR | None,
            "created_at": TIME,
        },
        sa.ForeignKeyConstraint(
            ["tx_id"],
            ["chain_tx.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    for table, indexed in reversed(_INDEXED.items()):
        drop_table(table, indexed)

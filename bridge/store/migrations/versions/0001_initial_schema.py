"""initial schema

Created 2026-11-27 22:03.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

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


def _create_table(table: str, *items: sa.schema.SchemaItem) -> None:
    op.create_table(table, *items)
    if _INDEXED[table]:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _INDEXED[table]:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def upgrade() -> None:
    _create_table(
        "chain_tx",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("hashes", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("raw_tx", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("max_fee_per_gas", sa.BigInteger(), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.BigInteger(), nullable=False),
        sa.Column("gas_limit", sa.Integer(), nullable=False),
        sa.Column("broadcast_at", sa.Float(), nullable=True),
        sa.Column("mined_block", sa.BigInteger(), nullable=True),
        sa.Column("mined_block_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("gas_used", sa.Integer(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "nonce"),
    )
    _create_table(
        "job",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("requester", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("spec_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("spec_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("payment_wei", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("callback_gas_limit", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("onchain_status", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("remote_job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("remote_status", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("remote_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("result_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("result_uri", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    _create_table(
        "output_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "path"),
    )
    _create_table(
        "remote_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_table(
        "scan_cursor",
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("contract"),
    )
    _create_table(
        "seen_block",
        sa.Column("contract", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("contract", "number"),
    )
    _create_table(
        "update_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("result_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("data", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tx_id", sa.Integer(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=True),
        sa.Column("skip_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tx_id"],
            ["chain_tx.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    for table, columns in reversed(_INDEXED.items()):
        if columns:
            with op.batch_alter_table(table, schema=None) as batch_op:
                for column in reversed(columns):
                    batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
        op.drop_table(table)

"""job.spec_abi replaces job.spec_json: the spec stored as the event carried it, abi.encode(spec)
(its keccak is job.spec_hash), decoded where it is used instead of at every scan.

Each existing row's JSON spec is encoded (the bytes the contract hashed when the JSON holds the
spec the requester paid for; a row whose JSON does not read as a spec gets no bytes, and the
worker fails its job for a spec that does not match its specHash, as it did before).

Created 2026-12-03 16:05.
"""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

# The bridge's own encoder and JSON form: the encoding is fixed by the contract (abi.encode of
# JobSpec, whose keccak the contract stores) and the JSON form by the rows this converts, so
# neither may change under this migration (tests/unit/test_migration_spec_abi.py).
from bridge.chain.submitted import LogDecodingError, read_spec, spec_encoding
from bridge.engine.codec import spec_from_json, spec_to_json

revision = "0009_spec_abi"
down_revision = "0008_networks"

#: Rows converted a statement: the table is walked by job id, never read whole.
_CHUNK = 1000


def _convert(source: str, target: str, convert: Callable[[Any], Any]) -> None:
    """Fills column ``target`` of every job from its ``source`` column, ``_CHUNK`` rows at a
    time in job id order."""
    bind = op.get_bind()
    job = sa.table("job", sa.column("job_id"), sa.column(source), sa.column(target))
    last = -1
    while True:
        rows = bind.execute(
            sa.select(job.c.job_id, job.c[source])
            .where(job.c.job_id > last)
            .order_by(job.c.job_id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        update = job.update().where(job.c.job_id == sa.bindparam("id"))
        bind.execute(
            update.values({target: sa.bindparam("v")}),
            [{"id": job_id, "v": convert(value)} for job_id, value in rows],
        )
        last = rows[-1][0]


def _encoded(spec_json: str) -> bytes:
    try:
        return spec_encoding(spec_from_json(spec_json))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, LogDecodingError):
        return b""


def _json(spec_abi: bytes) -> str:
    try:
        return spec_to_json(read_spec(bytes(spec_abi))[0])
    except LogDecodingError:
        return "{}"


def _replace(
    old: str, new: str, kind: sa.types.TypeEngine[Any], convert: Callable[[Any], Any]
) -> None:
    """Column ``new`` (of ``kind``, not null) in place of ``old``, filled from it."""
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column(new, kind, nullable=True))
    _convert(old, new, convert)
    with op.batch_alter_table("job") as batch:
        batch.drop_column(old)
        batch.alter_column(new, existing_type=kind, nullable=False)


def upgrade() -> None:
    _replace("spec_json", "spec_abi", sa.LargeBinary(), _encoded)


def downgrade() -> None:
    _replace("spec_abi", "spec_json", sa.Text(), _json)

"""The bridge's tables (SQLModel). Alembic migrations in ``migrations/`` create them.

Everything the bridge knows lives here, so any process can crash at any instant and a restart
continues from the database:

- ``ScanCursor`` / ``SeenBlock``: how far the log scanner got and the hashes of recent blocks,
  for reorg detection. Written in the same transaction as the jobs found.
- ``Job``: one row per on-chain job, with the spec from its ``JobSubmitted`` event and the
  bridge's own state (``JobState``) of the job.
- ``RemoteCall``: every call to CE about a job (for the timeline and metrics).
- ``RemoteCancel``: the outbox of remote jobs to cancel, written with the state change that
  calls for it, so a crash right after that change cannot leave a remote job running.
- ``OutputFile``: the downloaded result files, whose manifest hash went on-chain (their content
  in the output file store, ``bridge.outputs``, by sha256).
- ``Update``: the outbox of on-chain writes (``applyUpdates`` items), each assigned to a
  ``ChainTx`` once the transaction manager batches it.
- ``ChainTx``: a signed transaction, stored before it is broadcast.
- ``Binding``: the one (chain id, contract) this database belongs to, written at its first start.
- ``DispatchControl``: whether the operator paused dispatch (survives restarts).

Wei amounts are decimal strings (they exceed 64-bit integers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bridge.engine.states import JobState


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class TxState(StrEnum):
    """Persisted states of an on-chain write (after Chainlink's txmgr)."""

    UNSTARTED = "unstarted"  # updates chosen, not yet signed
    UNCONFIRMED = "unconfirmed"  # signed and stored; broadcast (maybe more than once)
    CONFIRMED = "confirmed"  # receipt has the required confirmations
    FATAL = "fatal_error"  # cannot be sent; its updates were released


class ScanCursor(SQLModel, table=True):
    """The scanner's progress for one contract: every block <= ``block`` has been processed."""

    __tablename__ = "scan_cursor"

    contract: str = Field(primary_key=True)
    block: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class SeenBlock(SQLModel, table=True):
    """Hash of a block the scanner processed; a mismatch later means a reorg."""

    __tablename__ = "seen_block"

    contract: str = Field(primary_key=True)
    number: int = Field(sa_column=Column(BigInteger, primary_key=True))
    hash: str


class Job(SQLModel, table=True):
    """One on-chain job and the bridge's progress with it."""

    __tablename__ = "job"

    job_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    requester: str = Field(index=True)
    #: ``abi.encode(spec)`` as the event carried it (its keccak is ``spec_hash``), decoded where
    #: the spec is used (``bridge.engine.codec.stored_spec``).
    spec_abi: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    spec_hash: str
    spec_error: str | None = None  # why the bridge cannot run this spec, once the worker knows
    payment_wei: str
    deadline: int = Field(sa_column=Column(BigInteger, nullable=False))
    callback_gas_limit: int = 0
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    block_hash: str
    tx_hash: str
    log_index: int
    generation: int = 0  # +1 each time a reorg hands this job id to a different submission
    create_sent_at: float | None = None  # epoch seconds job-create was first sent: it may exist
    recheck_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # ^ set by a reorg under the job's submission: it must be scanned again (same transaction,
    # same spec) before the scan passes this block, or the job is orphaned

    state: str = Field(default=JobState.NEW, index=True)
    onchain_status: int = 1  # last status known to be on-chain (Status enum value)
    cancel_requested: bool = False
    remote_job_id: str | None = None
    remote_status: str | None = None
    remote_error: str | None = None
    result_hash: str | None = None
    result_uri: str | None = None
    outcome: int | None = None  # terminal Status the bridge queued
    reason: str | None = None  # failure or cancellation reason queued on-chain
    attempts: int = 0  # consecutive failed attempts at the current step
    next_attempt_at: float = 0.0  # epoch seconds; the job is not worked on before this
    # The process working the job's CE step now (``bridge.store.claims``; PostgreSQL only):
    # its operator address, and the epoch seconds after which another process may take it.
    lease_holder: str | None = None
    lease_expires: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RemoteCall(SQLModel, table=True):
    """One call to CE about a job."""

    __tablename__ = "remote_call"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    kind: str  # create | status | cancel | download
    ok: bool
    detail: str | None = None  # remote status, remote job id or error message
    at: datetime = Field(default_factory=utcnow)


class RemoteCancel(SQLModel, table=True):
    """A remote job to cancel: queued in the transaction of the state change that calls for it,
    tried until CE answers (``done_at``), with a growing delay between attempts.

    An empty ``remote_job_id`` means the job's ``job-create`` was sent but its answer never
    stored (a crash, a lost answer): the remote job, if CE made one, is found by sending that
    ``job-create`` again (``idempotency_key``, ``request_json``), then cancelled.
    """

    __tablename__ = "remote_cancel"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    remote_job_id: str
    reason: str
    idempotency_key: str | None = None
    request_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    next_attempt_at: float = 0.0  # epoch seconds
    last_error: str | None = None
    lease_holder: str | None = None  # as ``Job.lease_holder``: the process sending it now
    lease_expires: float | None = None
    done_at: datetime | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class OutputFile(SQLModel, table=True):
    """A result file of a completed job, as downloaded from CE."""

    __tablename__ = "output_file"
    __table_args__ = (UniqueConstraint("job_id", "path"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    path: str  # relative to output/, '/' separators
    sha256: str
    size: int
    # None: the content is in the output file store (``bridge.outputs``) under ``sha256``;
    # bytes: a small file kept in its row (``BRIDGE_OUTPUT_INLINE_BYTES``), or a row written
    # before the store existed; served as it is.
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class Update(SQLModel, table=True):
    """An on-chain write waiting to be sent (an ``applyUpdates`` item)."""

    __tablename__ = "update_outbox"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    status: int
    result_hash: str = "0x" + "00" * 32
    data: str = ""
    tx_id: int | None = Field(default=None, foreign_key="chain_tx.id", index=True)
    applied: bool | None = None  # True applied, False skipped (UpdateSkipped) or dropped
    skip_reason: str | None = None  # the contract's error name, or why the bridge dropped it
    held: bool = False  # not to be sent while its job's submission is re-checked after a reorg
    # set when a transaction carrying it reverted on-chain: batched only with the updates of the
    # same group (each half of the reverted set is sent on its own; see bridge.tx.manager)
    split_group: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ChainTx(SQLModel, table=True):
    """A transaction of the operator key; the signed bytes are stored before the first broadcast."""

    __tablename__ = "chain_tx"
    __table_args__ = (UniqueConstraint("sender", "nonce"),)

    id: int | None = Field(default=None, primary_key=True)
    sender: str = Field(index=True)
    nonce: int = Field(sa_column=Column(BigInteger, nullable=False))
    attempt: int = 0  # 0 for the first signing; +1 for each fee-bumped replacement
    hashes: str = ""  # every hash broadcast for this nonce, comma-separated; any may be mined
    state: str = Field(default=TxState.UNSTARTED, index=True)
    raw_tx: str | None = None
    tx_hash: str | None = None
    max_fee_per_gas: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    max_priority_fee_per_gas: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    gas_limit: int = 0
    broadcast_at: float | None = None
    mined_block: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    mined_block_hash: str | None = None
    gas_used: int | None = None
    #: What the mined transaction cost, wei: gas used at its effective price plus the L1 fee.
    fee_paid_wei: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    #: The OP-stack L1 data fee in ``fee_paid_wei`` (0 on other chains).
    l1_fee_wei: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Binding(SQLModel, table=True):
    """The one (chain id, contract) this database serves, written at its first start.

    A single row (``id`` 1): job ids are only unique per contract, so a database reused for
    another chain or contract would mix their jobs. A bridge configured for another pair refuses
    to start (``bridge.store.control.bind``).
    """

    __tablename__ = "binding"

    id: int = Field(default=1, primary_key=True)
    chain_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    contract: str  # checksum address
    bound_at: datetime = Field(default_factory=utcnow)


class DispatchControl(SQLModel, table=True):
    """The operator's dispatch pause (``POST /admin/pause``): a single row (``id`` 1), read by
    every bridge process on this database, so a pause survives restarts. No row: not paused."""

    __tablename__ = "dispatch_control"

    id: int = Field(default=1, primary_key=True)
    paused: bool = False
    changed_at: datetime = Field(default_factory=utcnow)

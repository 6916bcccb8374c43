"""The shapes the HTTP API answers with (SQLModel "Public" classes, no tables).

Each table in ``bridge.store.models`` is shown through its own Public class here rather than
serialised as is: the Public shape names on-chain statuses (``"completed"``, not ``4``), parses
the stored spec, and leaves out what is internal (signed transaction bytes, file contents,
scheduling bookkeeping that is not useful to an operator). Nothing here holds or can hold a
secret: no class has a field for the CE authenticator, the operator key or the admin token.

Every route declares one of these as its response model, and its error answers as
:class:`ErrorBody`, so the OpenAPI schema describes every answer the API gives.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import StringConstraints
from sqlmodel import Field, SQLModel

from bridge.chain.spec import Status
from bridge.engine.states import JobState

#: Largest job id the API accepts: the store keeps ids in signed 64-bit columns.
MAX_JOB_ID = 2**63 - 1
#: Longest operator failure reason (it is written on-chain, so it costs gas).
MAX_REASON_LENGTH = 200
#: A reason: printable characters (no control characters), at least one that is not a space.
REASON_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class OnchainStatus(StrEnum):
    """``IJobEscrow.Status`` by name (the contract's values 0..7, lower case)."""

    NONE = "none"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @classmethod
    def of(cls, value: int) -> OnchainStatus:
        """The name of a ``Status`` value."""
        return cls(Status(value).name.lower())

    @property
    def value_int(self) -> int:
        """The contract's ``Status`` value."""
        return int(Status[self.name])


class ErrorBody(SQLModel):
    """Every error answer (4xx and 5xx, validation errors aside): what went wrong."""

    detail: str = Field(description="one line saying what went wrong")


# ---------------------------------------------------------------------------- health


class Alive(SQLModel):
    """``GET /healthz``: the process serves HTTP."""

    status: Literal["ok"] = "ok"


class Check(SQLModel):
    """One readiness check."""

    name: Literal["rpc", "database", "scan_lag", "ce", "writer"]
    ok: bool
    message: str = Field(description="what was checked and, when it failed, why")


class Readiness(SQLModel):
    """``GET /readyz``: every check; ready only when all pass."""

    ready: bool
    checks: list[Check]


# ---------------------------------------------------------------------------- jobs


class ResourcesPublic(SQLModel):
    """Compute resources in CE's units (MB for ram, disk and network)."""

    vcpus: int
    ram: int
    disk: int
    network_download: int
    network_upload: int


class InputFilePublic(SQLModel):
    """A file CE downloads before the job starts."""

    filename: str
    url: str


class SpecPublic(SQLModel):
    """A job's spec as submitted on-chain (``JobSubmitted``)."""

    app: str
    command_line: str
    specs: ResourcesPublic
    max_hours: int
    input_files: list[InputFilePublic]


class JobSummary(SQLModel):
    """A job in a list: who asked, where the bridge and the chain are with it."""

    job_id: int
    requester: str = Field(description="checksum address of the submitter")
    state: JobState = Field(description="the bridge's state of the job")
    onchain_status: OnchainStatus = Field(
        description="the last status the bridge saw on-chain (at its confirmation depth)"
    )
    remote_job_id: str | None = None
    payment_wei: str = Field(description="the payment escrowed at submission, in wei (decimal)")
    deadline: int = Field(description="on-chain deadline, unix seconds")
    created_at: datetime = Field(description="when the bridge first stored the job")
    updated_at: datetime


class TimelineKind(StrEnum):
    """What a timeline entry is."""

    SUBMITTED = "submitted"  # the JobSubmitted event, as the scanner stored it
    REMOTE_CALL = "remote_call"  # a call to CE about the job (RemoteCall)
    UPDATE = "update"  # an on-chain write the bridge queued (Update)
    TRANSACTION = "transaction"  # a transaction that carried one of the job's updates (ChainTx)


class TimelineEntry(SQLModel):
    """One thing that happened to a job. Fields that do not apply to the kind are null."""

    at: datetime = Field(description="when the bridge recorded it (UTC)")
    kind: TimelineKind
    summary: str = Field(description="one line for humans")
    block_number: int | None = Field(default=None, description="the block it is (was) mined in")
    tx_hash: str | None = None
    status: OnchainStatus | None = Field(default=None, description="update: the status written")
    data: str | None = Field(
        default=None, description="update: remote job id, result URI or reason"
    )
    applied: bool | None = Field(
        default=None, description="update: true applied, false skipped on-chain, null not yet"
    )
    skip_reason: str | None = Field(default=None, description="update: the UpdateSkipped error")
    call: str | None = Field(default=None, description="remote call: create/status/cancel/...")
    ok: bool | None = Field(default=None, description="remote call: whether it succeeded")
    detail: str | None = Field(
        default=None, description="remote call: CE's answer or error; transaction: its error"
    )
    tx_state: str | None = Field(
        default=None, description="transaction: unconfirmed / confirmed / fatal_error"
    )
    nonce: int | None = None
    attempt: int | None = Field(default=None, description="transaction: fee bumps so far")
    gas_used: int | None = None


class JobPublic(JobSummary):
    """``GET /jobs/{id}``: the job and its timeline."""

    spec: SpecPublic | None = Field(
        default=None,
        description="the spec the requester paid for (its encoding hashes to spec_hash; a string"
        " that is not UTF-8 holds U+FFFD); null if the stored encoding does not",
    )
    spec_hash: str
    spec_error: str | None = Field(default=None, description="why the bridge cannot run it")
    block_number: int = Field(description="block of the JobSubmitted event")
    tx_hash: str = Field(description="transaction of the JobSubmitted event")
    cancel_requested: bool
    remote_status: str | None = None
    remote_error: str | None = Field(default=None, description="the last failed CE call")
    attempts: int = Field(description="consecutive failed attempts at the current step")
    result_hash: str | None = Field(default=None, description="the result hash queued on-chain")
    result_uri: str | None = None
    outcome: OnchainStatus | None = Field(
        default=None, description="the terminal status the bridge queued"
    )
    reason: str | None = Field(default=None, description="failure or cancellation reason")
    timeline: list[TimelineEntry] = Field(description="everything above, oldest first")


class JobPending(SQLModel):
    """``GET /jobs/{id}`` for a job submitted on-chain that the bridge will act on once its
    submission has ``confirmations_required`` confirmations (it is not in the database yet)."""

    job_id: int
    state: Literal["pending"] = "pending"
    requester: str = Field(description="checksum address of the submitter")
    block_number: int = Field(description="block of the JobSubmitted event, as seen at the head")
    tx_hash: str = Field(description="transaction of the JobSubmitted event")
    confirmations: int = Field(description="blocks on top of it so far (0: in the head block)")
    confirmations_required: int = Field(
        description="BRIDGE_CONFIRMATIONS; with `safe` / `finalized`, how far behind the head "
        "the node's block of that tag is now"
    )


class JobPage(SQLModel):
    """``GET /jobs``: one page of jobs, newest first, and how many match in all."""

    total: int
    limit: int
    offset: int
    items: list[JobSummary]


class OutputFilePublic(SQLModel):
    """One result file."""

    path: str = Field(description="relative to the job's output/ directory")
    sha256: str = Field(description="lowercase hex sha256 of the content")
    size: int
    url: str = Field(description="where the file's bytes are served")


class OutputsPublic(SQLModel):
    """``GET /jobs/{id}/outputs/``: the manifest whose sha256 is the job's result hash."""

    job_id: int
    result_hash: str = Field(description="0x + sha256 of the manifest, as written on-chain")
    manifest: list[str] = Field(description="'<sha256>  <path>' lines, sorted as hashed")
    files: list[OutputFilePublic]


# ---------------------------------------------------------------------------- admin


class DispatchState(SQLModel):
    """Whether new jobs are being dispatched to CE."""

    dispatch_paused: bool


class FailRequest(SQLModel):
    """``POST /admin/jobs/{id}/fail``: why (written on-chain with the refund)."""

    reason: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_REASON_LENGTH, pattern=REASON_PATTERN),
    ] = Field(description="printable text with at least one non-space character")


class AdminJobResult(SQLModel):
    """What an admin action did to a job."""

    job_id: int
    state: JobState = Field(description="the job's state after the action")
    message: str

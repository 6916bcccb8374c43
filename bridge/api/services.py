"""The services behind the HTTP API: everything a route needs, so routes touch no web3 or SQL.

- :class:`JobQueries` (one database session): pages of jobs, one job with its timeline, its
  output manifest and files. Read-only.
- :class:`ReadinessProbe`: the ``/readyz`` checks (RPC, database, scan lag, CE), each with a
  message naming what failed. A check never raises; it fails.
- :class:`AdminActions`: pause and resume dispatch, retry and fail a job, through the running
  :class:`~bridge.engine.service.Bridge` (whose lock serialises every change of a job and whose
  state machine decides what a change means).
- :class:`MetricsSampler` and :class:`CallbackFailureCounter`: what ``/metrics`` reports that is
  computed at scrape time, from the database and the chain.

Nothing here imports FastAPI. Errors are the bridge's own (``JobNotFound``, ``JobConflict``,
``BridgeNotRunning``, ``RpcUnavailable``, ``StoreError``); ``bridge.api.app`` maps them to HTTP.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar
from urllib.parse import quote

from hexbytes import HexBytes
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from web3 import Web3
from web3.exceptions import Web3Exception

from bridge.api.schemas import (
    AdminJobResult,
    Check,
    DispatchState,
    InputFilePublic,
    JobPage,
    JobPending,
    JobPublic,
    JobSummary,
    OnchainStatus,
    OutputFilePublic,
    OutputsPublic,
    Readiness,
    ResourcesPublic,
    SpecPublic,
    TimelineEntry,
    TimelineKind,
)
from bridge.chain.finality import tagged_block
from bridge.chain.reader import find_deployment_block
from bridge.chain.rpc import FailoverProvider
from bridge.chain.spec import JobSpec
from bridge.engine.codec import request_for
from bridge.engine.service import Bridge
from bridge.engine.states import JobState
from bridge.errors import (
    BridgeNotRunning,
    JobNotFound,
    RemoteError,
    RpcUnavailable,
    SpecError,
    StoreError,
)
from bridge.results import manifest_from_digests, safe_relative_path
from bridge.store.control import dispatch_paused
from bridge.store.models import ChainTx, Job, OutputFile, RemoteCall, ScanCursor, TxState, Update

log = logging.getLogger("bridge.api")

#: The ``CallbackFailed(uint256)`` event's topic.
CALLBACK_FAILED_TOPIC = HexBytes(Web3.keccak(text="CallbackFailed(uint256)"))

_NO_BRIDGE = "no bridge runs in this process"

#: A table of rows about one job, oldest first by id (``JobQueries._of_job``).
_JobRow = TypeVar("_JobRow", RemoteCall, Update)


def _utc(moment: datetime) -> datetime:
    """Datetimes come back from SQLite without a zone; they are all UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class StoredFile:
    """One output file, as the bridge downloaded and hashed it: on disk in the output file
    store (``location``), or its bytes kept in its row (``content``: a small file, up to
    ``BRIDGE_OUTPUT_INLINE_BYTES``, or a row from before the store)."""

    path: str
    content: bytes | None
    sha256: str
    media_type: str
    location: Path | None = None
    size: int = 0


class JobQueries:
    """Read-only views of the bridge's jobs over one database session (and the output file
    store under ``outputs``)."""

    def __init__(self, session: Session, outputs: Path | None = None) -> None:
        self._session = session
        self._outputs = outputs

    def page(
        self,
        *,
        state: JobState | None = None,
        status: OnchainStatus | None = None,
        requester: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """Jobs matching every filter given, newest (highest id) first.

        Args:
            state: the bridge's state of the job.
            status: the on-chain status the bridge last saw.
            requester: the submitter's address (any case).
            limit: page size.
            offset: jobs to skip.
        """
        query = select(Job)
        if state is not None:
            query = query.where(col(Job.state) == state.value)
        if status is not None:
            query = query.where(col(Job.onchain_status) == status.value_int)
        if requester is not None:
            query = query.where(col(Job.requester) == Web3.to_checksum_address(requester.lower()))
        total = self._session.exec(select(func.count()).select_from(query.subquery())).one()
        rows = self._session.exec(
            query.order_by(col(Job.job_id).desc()).offset(offset).limit(limit)
        ).all()
        return JobPage(
            total=int(total), limit=limit, offset=offset, items=[_summary(j) for j in rows]
        )

    def job(self, job_id: int) -> JobPublic:
        """One job with its timeline: the submission, every CE call, every update queued
        (with its transaction and whether it was applied or skipped) and every transaction
        that carried one, oldest first.

        Raises:
            JobNotFound: no such job.
        """
        job = self._get(job_id)
        # Why it cannot run, as the worker will find (or found) it: also for a job that ended
        # before the worker came to send it.
        spec, _, problem = request_for(job.spec_abi, job.spec_hash)
        return JobPublic(
            **_summary(job).model_dump(),
            spec=None if spec is None else _spec_public(spec),
            spec_hash=job.spec_hash,
            spec_error=job.spec_error or problem,
            block_number=job.block_number,
            tx_hash=job.tx_hash,
            cancel_requested=job.cancel_requested,
            remote_status=job.remote_status,
            remote_error=job.remote_error,
            attempts=job.attempts,
            result_hash=job.result_hash,
            result_uri=job.result_uri,
            outcome=OnchainStatus.of(job.outcome) if job.outcome is not None else None,
            reason=job.reason,
            timeline=self._timeline(job),
        )

    def outputs(self, job_id: int, base_url: str) -> OutputsPublic:
        """The job's output manifest (``sha256(manifest)`` is its result hash).

        Args:
            job_id: the job.
            base_url: the URL the files are served under (ends with ``/``).

        Raises:
            JobNotFound: no such job, or it has no result yet.
        """
        job = self._get(job_id)
        if job.result_hash is None:
            raise JobNotFound(job_id, f"job {job_id} has no outputs (it is {job.state})")
        files = self._session.exec(
            select(OutputFile.path, OutputFile.sha256, OutputFile.size).where(
                col(OutputFile.job_id) == job_id
            )
        ).all()
        digests = {path: digest for path, digest, _ in files}
        manifest = manifest_from_digests(digests).decode()
        return OutputsPublic(
            job_id=job_id,
            result_hash=job.result_hash,
            manifest=manifest.splitlines(),
            files=[
                OutputFilePublic(
                    path=path, sha256=digest, size=size, url=base_url + quote(path, safe="/")
                )
                for path, digest, size in sorted(files, key=lambda f: f[0].encode())
            ],
        )

    def output_file(self, job_id: int, path: str) -> StoredFile:
        """One output file's stored bytes.

        Raises:
            JobNotFound: no such job, or no such file (including paths that could not be one).
        """
        try:
            safe_relative_path(path)
        except SpecError:
            raise JobNotFound(job_id, f"job {job_id} has no output file {path!r}") from None
        row = self._session.exec(
            select(OutputFile).where(col(OutputFile.job_id) == job_id, col(OutputFile.path) == path)
        ).first()
        if row is None:
            self._get(job_id)
            raise JobNotFound(job_id, f"job {job_id} has no output file {path!r}")
        media_type = mimetypes.guess_type(path, strict=False)[0] or "application/octet-stream"
        location = None
        if row.content is None:
            if self._outputs is None:
                raise JobNotFound(job_id, f"job {job_id}'s output files are not served here")
            location = self._outputs / "objects" / row.sha256[:2] / row.sha256
            if not location.is_file():
                raise JobNotFound(job_id, f"job {job_id}'s file {path!r} is missing from store")
        return StoredFile(
            path=row.path,
            content=row.content,
            sha256=row.sha256,
            media_type=media_type,
            location=location,
            size=row.size,
        )

    def _get(self, job_id: int) -> Job:
        job = self._session.get(Job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _timeline(self, job: Job) -> list[TimelineEntry]:
        said = f"JobSubmitted in block {job.block_number}, paying {job.payment_wei} wei"
        entries = [
            TimelineEntry(
                **_entry_head(job.created_at, TimelineKind.SUBMITTED, said),
                block_number=job.block_number,
                tx_hash=job.tx_hash,
                status=OnchainStatus.SUBMITTED,
            )
        ]
        for call in self._of_job(RemoteCall, job.job_id):
            outcome = "succeeded" if call.ok else "failed"
            entries.append(
                TimelineEntry(
                    **_entry_head(call.at, TimelineKind.REMOTE_CALL, f"CE {call.kind} {outcome}"),
                    call=call.kind,
                    ok=call.ok,
                    detail=call.detail,
                )
            )
        updates = self._of_job(Update, job.job_id)
        tx_ids = {u.tx_id for u in updates if u.tx_id is not None}
        txs = (
            {
                tx.id: tx
                for tx in self._session.exec(
                    select(ChainTx).where(col(ChainTx.id).in_(tx_ids))
                ).all()
            }
            if tx_ids
            else {}
        )
        for update in updates:
            status = OnchainStatus.of(update.status) if 0 <= update.status <= 7 else None
            outcome = {True: "applied", False: "skipped", None: "pending"}[update.applied]
            said = f"update to {status or update.status} queued: {outcome}"
            entries.append(
                TimelineEntry(
                    **_entry_head(update.created_at, TimelineKind.UPDATE, said),
                    status=status,
                    data=update.data,
                    applied=update.applied,
                    skip_reason=update.skip_reason,
                    **_mined(txs.get(update.tx_id) if update.tx_id is not None else None),
                )
            )
        for tx in sorted(txs.values(), key=lambda t: t.nonce):
            said = f"applyUpdates tx nonce {tx.nonce}: {tx.state}"
            entries.append(
                TimelineEntry(
                    **_entry_head(tx.created_at, TimelineKind.TRANSACTION, said),
                    **_mined(tx),
                    tx_state=tx.state,
                    nonce=tx.nonce,
                    attempt=tx.attempt,
                    gas_used=tx.gas_used,
                    detail=tx.error,
                )
            )
        order = list(TimelineKind)
        entries.sort(key=lambda e: (e.at, order.index(e.kind)))
        return entries

    def _of_job(self, row: type[_JobRow], job_id: int) -> Sequence[_JobRow]:
        """The rows of ``row``'s table about ``job_id``, oldest first."""
        return self._session.exec(
            select(row).where(col(row.job_id) == job_id).order_by(col(row.id))
        ).all()


class _EntryHead(TypedDict):
    at: datetime
    kind: TimelineKind
    summary: str


def _entry_head(at: datetime, kind: TimelineKind, summary: str) -> _EntryHead:
    """The fields every timeline entry has, ``at`` (stored without a zone) in UTC."""
    return {"at": _utc(at), "kind": kind, "summary": summary}


class _Mined(TypedDict):
    block_number: int | None
    tx_hash: str | None


def _mined(tx: ChainTx | None) -> _Mined:
    """Where ``tx`` is on-chain: its hash and block (None until sent or mined; both None
    without a transaction)."""
    if tx is None:
        return {"block_number": None, "tx_hash": None}
    return {"block_number": tx.mined_block, "tx_hash": tx.tx_hash}


def _summary(job: Job) -> JobSummary:
    return JobSummary(
        job_id=job.job_id,
        requester=job.requester,
        state=JobState(job.state),
        onchain_status=OnchainStatus.of(job.onchain_status),
        remote_job_id=job.remote_job_id,
        payment_wei=job.payment_wei,
        deadline=job.deadline,
        created_at=_utc(job.created_at),
        updated_at=_utc(job.updated_at),
    )


class PendingSubmissions:
    """Finds a ``JobSubmitted`` the bridge has not stored yet because it is not confirmed.

    One ``eth_getLogs`` filtered by the event's topic and the job id, over the last
    ``window`` blocks only (the confirmations plus the scan lag allowed): bounded and cheap,
    whatever the id asked for. Only the topics are read, never the spec, so a submission the
    bridge could not decode is still reported.
    """

    def __init__(
        self,
        w3: Web3,
        contract: str,
        confirmations: int,
        window: int,
        target: Callable[[int], int] | None = None,
    ) -> None:
        self._w3 = w3
        self._contract = Web3.to_checksum_address(contract)
        self._confirmations = confirmations
        self._window = max(window, confirmations + 1)
        #: With a finality tag: the last block acted on at a head (``Bridge.scan_target``); the
        #: confirmations required are then how far behind the head it is now.
        self._target = target
        self._topic = "0x" + _submitted_topic().hex()

    def find(self, job_id: int) -> JobPending | None:
        """The pending submission of ``job_id`` seen at the head, or None.

        Raises:
            RpcUnavailable: the node did not answer.
        """
        try:
            head = int(self._w3.eth.block_number)
            required = self._confirmations
            if self._target is not None:
                required = max(0, head - self._target(head))
            window = max(self._window, required + 1)
            logs = self._w3.eth.get_logs(
                {
                    "address": self._contract,
                    "fromBlock": max(head - window + 1, 0),
                    "toBlock": head,
                    "topics": [self._topic, "0x" + job_id.to_bytes(32, "big").hex()],
                }
            )
        except (Web3Exception, OSError, ValueError) as exc:
            raise RpcUnavailable(f"reading pending submissions: {type(exc).__name__}") from exc
        for entry in logs:
            if entry.get("removed"):
                continue
            block = int(entry["blockNumber"])
            requester = "0x" + bytes(entry["topics"][2])[-20:].hex()
            return JobPending(
                job_id=job_id,
                requester=Web3.to_checksum_address(requester),
                block_number=block,
                tx_hash="0x" + bytes(entry["transactionHash"]).hex(),
                confirmations=head - block,
                confirmations_required=required,
            )
        return None


def _submitted_topic() -> bytes:
    """``JobSubmitted``'s topic, from the compiled ABI (whatever fields the event has)."""
    from eth_utils.abi import event_abi_to_log_topic

    from bridge.chain.artifacts import load_artifact

    for entry in load_artifact("JobEscrow").abi:
        if entry.get("type") == "event" and entry.get("name") == "JobSubmitted":
            return bytes(event_abi_to_log_topic(entry))  # type: ignore[arg-type]
    raise RuntimeError("abi/JobEscrow.json has no JobSubmitted event")


# ---------------------------------------------------------------------------- readiness


class ReadinessProbe:
    """The ``/readyz`` checks.

    Args:
        db: the bridge's database.
        bridge: the running bridge; without one the RPC, scan and CE checks fail.
        max_scan_lag: most blocks the scanner may be behind ``head - confirmations``.
    """

    def __init__(self, db: Engine, bridge: Bridge | None, max_scan_lag: int) -> None:
        self._db = db
        self._bridge = bridge
        self._max_scan_lag = max_scan_lag

    def check(self) -> Readiness:
        """Runs every check (each one, even after a failure) and never raises."""
        database = self._database()
        bridge = self._bridge
        if bridge is None:
            checks = [
                Check(name="rpc", ok=False, message=_NO_BRIDGE),
                database,
                Check(name="scan_lag", ok=False, message=_NO_BRIDGE),
                Check(name="ce", ok=False, message=_NO_BRIDGE),
                Check(name="writer", ok=False, message=_NO_BRIDGE),
            ]
        else:
            head: int | None = None
            try:
                head = bridge.reader.head()
                rpc = Check(name="rpc", ok=True, message=f"node answers; head block {head}")
            except RpcUnavailable as exc:
                rpc = Check(name="rpc", ok=False, message=f"node unreachable: {exc}")
            checks = [
                rpc,
                database,
                self._scan_lag(bridge, head, database.ok),
                self._ce(bridge),
                self._writer(bridge),
            ]
        return Readiness(ready=all(c.ok for c in checks), checks=checks)

    def _database(self) -> Check:
        try:
            with self._db.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return Check(
                name="database", ok=False, message=f"database unreachable: {type(exc).__name__}"
            )
        return Check(name="database", ok=True, message="database answers")

    def _scan_lag(self, bridge: Bridge, head: int | None, db_ok: bool) -> Check:
        if head is None or not db_ok:
            return Check(
                name="scan_lag", ok=False, message="unknown: the node or the database is down"
            )
        try:
            cursor = scan_cursor(self._db, bridge.contract)
        except StoreError as exc:
            return Check(name="scan_lag", ok=False, message=str(exc))
        if cursor is None:
            return Check(name="scan_lag", ok=False, message="the scanner has not scanned yet")
        try:
            target = bridge.scan_target(head)
        except RpcUnavailable as exc:
            return Check(name="scan_lag", ok=False, message=str(exc))
        lag = max(0, target - cursor)
        ok = lag <= self._max_scan_lag
        return Check(
            name="scan_lag",
            ok=ok,
            message=f"scanner is {lag} blocks behind {_target_name(bridge)} "
            f"(at most {self._max_scan_lag} allowed)",
        )

    @staticmethod
    def _writer(bridge: Bridge) -> Check:
        """Whether this process sends its key's transactions or stands by for them; a standby
        is ready (it scans when it leads, works CE jobs and serves the API)."""
        if bridge.writer_active:
            return Check(
                name="writer", ok=True, message=f"sends operator {bridge.tx.sender}'s transactions"
            )
        return Check(
            name="writer",
            ok=True,
            message=f"standing by: another process holds operator {bridge.tx.sender}'s writer; "
            "this one takes over when it is gone",
        )

    @staticmethod
    def _ce(bridge: Bridge) -> Check:
        try:
            bridge.ce.ping()
        except RemoteError as exc:
            return Check(name="ce", ok=False, message=f"CE API unreachable or refusing: {exc}")
        return Check(name="ce", ok=True, message="CE API answers")


def scan_cursor(db: Engine, contract: str) -> int | None:
    """The last block the scanner finished for ``contract``, or None before its first scan.

    Raises:
        StoreError: the database failed.
    """
    try:
        with Session(db) as session:
            cursor = session.get(ScanCursor, contract)
            return None if cursor is None else cursor.block
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the scan cursor failed: {type(exc).__name__}") from exc


# ---------------------------------------------------------------------------- admin


class AdminActions:
    """Operator actions on the running bridge. Every job change goes through the Bridge."""

    def __init__(self, bridge: Bridge | None) -> None:
        self._bridge = bridge

    def _running(self) -> Bridge:
        if self._bridge is None:
            raise BridgeNotRunning(f"{_NO_BRIDGE}: admin actions need one")
        return self._bridge

    def pause(self) -> DispatchState:
        """Stops dispatching new jobs to CE; jobs already on CE are still followed. Stored in
        the database: it holds across restarts until ``resume``."""
        return self._set_pause(True)

    def resume(self) -> DispatchState:
        """Dispatches new jobs again (those that waited go first, oldest first)."""
        return self._set_pause(False)

    def _set_pause(self, paused: bool) -> DispatchState:
        try:
            self._running().set_dispatch_paused(paused)  # stored and logged by the bridge
        except SQLAlchemyError as exc:
            raise StoreError(f"storing the dispatch pause failed: {type(exc).__name__}") from exc
        return DispatchState(dispatch_paused=paused)

    def retry(self, job_id: int) -> AdminJobResult:
        """Makes an open job's current step due now, with a fresh attempt count.

        Raises:
            JobNotFound, JobConflict (not open), BridgeNotRunning.
        """
        state = self._running().retry_job(job_id)
        return AdminJobResult(job_id=job_id, state=state, message="retry scheduled")

    def fail(self, job_id: int, reason: str) -> AdminJobResult:
        """Fails an open job on-chain with ``reason``; the requester is refunded.

        Raises:
            JobNotFound, JobConflict (not open, or a terminal update already queued),
            BridgeNotRunning.
        """
        decision = self._running().fail_job(job_id, reason)
        written = decision.updates[0].data if decision.updates else reason
        return AdminJobResult(
            job_id=job_id, state=decision.state, message=f"Failed queued on-chain: {written}"
        )


# ---------------------------------------------------------------------------- metrics


class CallbackFailureCounter:
    """Counts the escrow's ``CallbackFailed`` events, cheaply: one topic-filtered
    ``eth_getLogs`` per block range, only over blocks not counted before, at confirmation depth,
    and at most ``max_ranges`` ranges per call (a new process catches up over a few scrapes).

    The count lives in memory: after a restart it is recounted from ``first_block``.
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        first_block: int | None,
        confirmations: int,
        block_range: int,
        max_ranges: int = 10,
    ) -> None:
        self._w3 = w3
        self._address = Web3.to_checksum_address(address)
        self._next: int | None = first_block
        self._confirmations = confirmations
        self._range = block_range
        self._max_ranges = max_ranges
        self._count = 0
        self._lock = threading.Lock()

    def count(self, head: int, safe: int | None = None) -> int:
        """The failures seen up to ``safe`` (default ``head - confirmations``; or less, while
        catching up).

        Raises:
            RpcUnavailable: the node failed; what was counted so far is kept.
        """
        with self._lock:
            if self._next is None:
                self._next = find_deployment_block(self._w3, self._address)
            if safe is None:
                safe = head - self._confirmations
            for _ in range(self._max_ranges):
                if self._next > safe:
                    break
                to_block = min(safe, self._next + self._range - 1)
                try:
                    logs = self._w3.eth.get_logs(
                        {
                            "address": self._address,
                            "fromBlock": self._next,
                            "toBlock": to_block,
                            "topics": [CALLBACK_FAILED_TOPIC],
                        }
                    )
                except (Web3Exception, OSError, ValueError) as exc:
                    raise RpcUnavailable(
                        f"eth_getLogs for CallbackFailed failed: {type(exc).__name__}"
                    ) from exc
                self._count += len(logs)
                self._next = to_block + 1
            return self._count


@dataclass(frozen=True)
class MetricsSnapshot:
    """What ``/metrics`` reports at one scrape; None where the source was unavailable."""

    jobs_by_state: dict[str, int]
    txs_by_state: dict[str, int]
    tx_replacements: int
    gas_used: int
    updates_waiting: int
    updates_skipped: int
    dispatch_paused: bool | None = None
    head: int | None = None
    scan_cursor: int | None = None
    scan_lag: int | None = None
    operator_balance_wei: int | None = None
    callback_failures: int | None = None
    #: What the operator's mined writes cost (gas at the effective price + L1 fee), and the L1
    #: data fees alone (OP-stack chains; 0 elsewhere).
    fees_paid_wei: int = 0
    l1_fees_paid_wei: int = 0
    #: Blocks between the head and the last block the scanner may read (confirmations or tag).
    finality_lag: int | None = None
    #: Blocks between the head and the node's ``finalized`` block (None: the node has none).
    finalized_lag: int | None = None
    #: Each RPC endpoint (redacted URL) and whether it is in use (not down, not lagging).
    rpc_endpoints: tuple[tuple[str, bool], ...] = ()
    #: Whether this process sends its key's transactions (False: it stands by for them).
    writer_active: bool | None = None


def _target_name(bridge: Bridge) -> str:
    """What the scanner reads up to, in words: ``head - N`` or the node's tag."""
    tag = bridge.finality.tag
    return f"the {tag} block" if tag else "head - confirmations"


def _finalized_lag(bridge: Bridge, head: int) -> int | None:
    """Blocks between ``head`` and the node's finalized block; None when it has none (or does
    not know the tag: a node before the merge)."""
    try:
        finalized = tagged_block(bridge.w3, "finalized")
    except RpcUnavailable:
        return None
    return None if finalized is None else max(0, head - finalized)


class MetricsSampler:
    """Computes a :class:`MetricsSnapshot` from the database and, with a bridge, the chain.

    The chain part is best effort: an unreachable node leaves those values None (and is
    logged), so a scrape never fails because of the node.
    """

    def __init__(
        self,
        db: Engine,
        bridge: Bridge | None,
        callbacks: CallbackFailureCounter | None = None,
    ) -> None:
        self._db = db
        self._bridge = bridge
        self._callbacks = callbacks

    def sample(self) -> MetricsSnapshot:
        """One snapshot.

        Raises:
            StoreError: the database failed.
        """
        try:
            snapshot = self._from_db()
        except SQLAlchemyError as exc:
            raise StoreError(f"metrics: database error {type(exc).__name__}") from exc
        bridge = self._bridge
        if bridge is None:
            return snapshot
        # The snapshot's chain fields, as they are read: those after a failure stay None.
        chain: dict[str, Any] = {}
        try:
            head = chain["head"] = bridge.reader.head()
            target = bridge.scan_target(head)
            chain["finality_lag"] = head - target
            chain["finalized_lag"] = _finalized_lag(bridge, head)
            cursor = chain["scan_cursor"] = scan_cursor(self._db, bridge.contract)
            if cursor is not None:
                chain["scan_lag"] = max(0, target - cursor)
            chain["operator_balance_wei"] = int(bridge.w3.eth.get_balance(bridge.tx.sender))
            if self._callbacks is not None:
                chain["callback_failures"] = self._callbacks.count(head, target)
        except (RpcUnavailable, Web3Exception, OSError) as exc:
            log.warning("metrics: chain values unavailable: %s", type(exc).__name__)
        provider = getattr(bridge.w3, "provider", None)
        if isinstance(provider, FailoverProvider):
            now = time.monotonic()
            chain["rpc_endpoints"] = tuple(
                (h.shown, h.down_until <= now and not h.lagging and not h.wrong_chain)
                for h in provider.health()
            )
        return replace(snapshot, **chain, writer_active=bridge.writer_active)

    def _from_db(self) -> MetricsSnapshot:
        with Session(self._db) as session:
            jobs = dict.fromkeys((s.value for s in JobState), 0)
            for state, n in session.exec(
                select(Job.state, func.count()).group_by(col(Job.state))
            ).all():
                jobs[state] = int(n)
            txs = dict.fromkeys((s.value for s in TxState if s is not TxState.UNSTARTED), 0)
            for state, n in session.exec(
                select(ChainTx.state, func.count()).group_by(col(ChainTx.state))
            ).all():
                txs[state] = int(n)
            replacements = session.exec(select(func.coalesce(func.sum(ChainTx.attempt), 0))).one()
            gas = session.exec(
                select(func.coalesce(func.sum(ChainTx.gas_used), 0)).where(
                    col(ChainTx.state).in_([TxState.CONFIRMED, TxState.FATAL])
                )
            ).one()
            paid, l1_paid = session.exec(
                select(
                    func.coalesce(func.sum(ChainTx.fee_paid_wei), 0),
                    func.coalesce(func.sum(ChainTx.l1_fee_wei), 0),
                ).where(col(ChainTx.state).in_([TxState.CONFIRMED, TxState.FATAL]))
            ).one()
            waiting = session.exec(
                select(func.count()).select_from(Update).where(col(Update.tx_id).is_(None))
            ).one()
            skipped = session.exec(
                select(func.count()).select_from(Update).where(col(Update.applied).is_(False))
            ).one()
        return MetricsSnapshot(
            dispatch_paused=dispatch_paused(self._db),
            jobs_by_state=jobs,
            txs_by_state=txs,
            tx_replacements=int(replacements or 0),
            gas_used=int(gas or 0),
            fees_paid_wei=int(paid or 0),
            l1_fees_paid_wei=int(l1_paid or 0),
            updates_waiting=int(waiting),
            updates_skipped=int(skipped),
        )


def _spec_public(spec: JobSpec) -> SpecPublic:
    """A job's spec as ``GET /jobs/{id}`` shows it."""
    return SpecPublic(
        app=spec.app,
        command_line=spec.command_line,
        specs=ResourcesPublic(
            vcpus=spec.specs.vcpus,
            ram=spec.specs.ram,
            disk=spec.specs.disk,
            network_download=spec.specs.network_download,
            network_upload=spec.specs.network_upload,
        ),
        max_hours=spec.max_hours,
        input_files=[InputFilePublic(filename=f.filename, url=f.url) for f in spec.input_files],
    )

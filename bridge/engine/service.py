"""The bridge service: the loops that drive the job state machine (the imperative shell).

Three loops, each a ``*_once`` method that a thread calls repeatedly:

1. ``scan_once``: reads the escrow's logs up to ``head - confirmations``, checks the stored block
   hash under the cursor (a mismatch rewinds and re-scans), and stores new jobs, cancellation
   requests and on-chain settlements together with the new cursor in ONE database transaction.
2. ``work_once``: for each open job that is due: create its remote job (``Idempotency-Key``
   makes a repeat return the same one), poll it, cancel it, or fetch and hash its outputs; fail
   it before its deadline.
3. ``tx_once``: the transaction manager batches queued updates into ``applyUpdates``.

Every change of a job goes through ``_commit_event``: under a lock it reloads the job, checks
that it is still in the state the I/O was based on, asks ``machine.transition`` what follows,
and stores the new state with the updates to queue in one transaction. A remote job to cancel
is queued in that same transaction (``remote_cancel``), sent after the commit, and retried by
the worker until CE answers: a crash between the two cannot leave a remote job running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlmodel import Session, col, select
from web3 import Web3
from web3.contract import Contract

from bridge.chain.artifacts import load_artifact
from bridge.chain.deploy import connect
from bridge.chain.finality import Finality, final_block
from bridge.chain.reader import (
    CancelRequestedLog,
    ChainLog,
    LogReader,
    RangeSizer,
    StatusLog,
    SubmittedLog,
    find_deployment_block,
    is_range_error,
)
from bridge.chain.spec import JobSpec, Status
from bridge.config import Settings
from bridge.engine import machine as m
from bridge.engine.states import JobState
from bridge.errors import (
    AlreadyRunning,
    BridgeError,
    DownloadRefused,
    InsufficientFunds,
    JobConflict,
    JobNotFound,
    OutputTooLarge,
    RemoteAuthError,
    RemoteError,
    RemoteRejected,
    RpcUnavailable,
    SpecError,
    StoreError,
    StoreUnavailable,
)
from bridge.jobdoc import body_of, spec_of
from bridge.logs import install_redaction, redact_url
from bridge.outputs import OutputStore, StoredObject
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, RemoteJobStatus, idempotency_key
from bridge.results import manifest_from_digests, safe_input_url, safe_relative_path
from bridge.store import control
from bridge.store.db import describe_db_error, open_database, shown_url
from bridge.store.locks import ProcessLock
from bridge.store.models import (
    Job,
    OutputFile,
    RemoteCall,
    RemoteCancel,
    ScanCursor,
    SeenBlock,
    Update,
    utcnow,
)
from bridge.tx.fees import FeeOracle
from bridge.tx.manager import TxManager
from bridge.tx.policy import cap_reason

log = logging.getLogger("bridge.engine")

#: A call to CE to record (``RemoteCall``): kind, whether it succeeded, detail.
_Call = tuple[str, bool, str | None]

#: ``Update.skip_reason`` of a write the bridge dropped: its job's submission vanished in a reorg.
DROPPED = "dropped: submission removed by a chain reorganisation"

_WORK_STATES = (
    JobState.NEW,
    JobState.DISPATCHED,
    JobState.RUNNING,
    JobState.CANCELLING,
    JobState.FINISHING,
)


def spec_to_request(spec: JobSpec) -> CEJobRequest:
    """The CE job-create request for an on-chain spec.

    Raises:
        SpecError: the spec cannot run on CE (e.g. an input filename that escapes the job's
            directory); the job is failed on-chain with this message.
    """
    for f in spec.input_files:
        safe_relative_path(f.filename)
        safe_input_url(f.url, f.filename)
    s = spec.specs
    return CEJobRequest(
        app=spec.app,
        command_line=spec.command_line,
        vcpus=s.vcpus,
        ram=s.ram,
        disk=s.disk,
        network_download=s.network_download,
        network_upload=s.network_upload,
        hours=spec.max_hours,
        input_files=tuple((f.filename, f.url) for f in spec.input_files),
    )


def spec_to_json(spec: JobSpec) -> str:
    """The spec as stored in the database: CE's job document (``bridge.jobdoc``)."""
    return json.dumps(body_of(spec))


def spec_from_json(text: str) -> JobSpec:
    """Inverse of ``spec_to_json``."""
    return spec_of(json.loads(text))


def due_jobs(db: Engine, states: Iterable[JobState], now: float, limit: int = 256) -> list[int]:
    """Ids of the jobs in ``states`` due at ``now``, longest-waiting first, at most ``limit``.

    New jobs (never attempted, ``next_attempt_at`` 0) come before ones polled a moment ago, so a
    round's limit never starves the newest jobs behind the oldest open ones.
    """
    with Session(db) as session:
        return list(
            session.exec(
                select(Job.job_id)
                .where(col(Job.state).in_(list(states)), col(Job.next_attempt_at) <= now)
                .order_by(col(Job.next_attempt_at), col(Job.job_id))
                .limit(limit)
            ).all()
        )


def _db_outage(exc: BaseException) -> str | None:
    """Why the database is unreachable, if that is what ``exc`` (or its cause) says; else None."""
    for error in (exc, exc.__cause__):
        if isinstance(error, StoreUnavailable):
            return str(error)
        if isinstance(error, (OperationalError, InterfaceError, DisconnectionError)):
            reason, transient = describe_db_error(error)
            return reason if transient else None
    return None


def _view(job: Job) -> m.JobView:
    return m.JobView(
        state=JobState(job.state),
        remote_job_id=job.remote_job_id,
        remote_status=job.remote_status,
        cancel_requested=job.cancel_requested,
    )


@dataclass(frozen=True)
class ScanReport:
    """What one ``scan_once`` did."""

    from_block: int
    to_block: int
    logs: int
    rewound_to: int | None = None


class Bridge:
    """One bridge process: scanner, worker and transaction manager over one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Engine,
        w3: Web3,
        ce: CEClient,
        tx: TxManager,
        reader: LogReader,
        escrow: Contract,
        chain_id: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.w3 = w3
        self.ce = ce
        self.tx = tx
        self.reader = reader
        self.escrow = escrow
        self.chain_id = chain_id
        self.contract = settings.contract_address
        self._clock = clock
        self._lock = threading.RLock()
        self._sizer = RangeSizer(max_range=settings.max_block_range)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ce-work")
        #: Mirror of the stored pause (``control.dispatch_paused``), read each worker round.
        self.dispatch_paused = threading.Event()
        self._pause_lock = threading.Lock()
        self._stop = threading.Event()
        self._head_lock = threading.Lock()
        self._head_cache: tuple[float, set[int]] | None = None  # see _head_settled
        self._threads: list[threading.Thread] = []
        self._process_lock: ProcessLock | None = None
        #: Why the bridge stopped itself (e.g. its process lock was taken), or None.
        self.fatal: str | None = None
        self.outputs = OutputStore(settings.output_root)
        self.finality = Finality.of(settings.confirmations)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, process_lock: ProcessLock | None = None
    ) -> Bridge:
        """Builds a bridge from its settings: opens (and migrates) the database, connects, and
        binds the database to the node's chain id and the contract (``control.bind``).

        Args:
            process_lock: held for this process (``acquire_process_lock``); the bridge owns it
                from here, checks it in its loops and releases it in ``stop()``.

        Raises:
            DatabaseBound: the database belongs to another chain or contract (nothing written).
            StoreUnavailable, RpcUnavailable: the database or the node cannot be reached.
        """
        install_redaction(*settings.rpc_endpoints)  # provider keys in URLs never reach a log
        db = open_database(settings.database_url)
        w3 = connect(settings.rpc_endpoints, max_lag=settings.rpc_max_lag)
        try:
            chain_id = int(w3.eth.chain_id)
        except Exception:
            db.dispose()
            raise RpcUnavailable(
                f"cannot reach the RPC node at {redact_url(settings.rpc_endpoint)}"
            ) from None
        try:
            control.bind(
                db, chain_id, settings.contract_address, db_shown=shown_url(settings.database_url)
            )
            paused = control.dispatch_paused(db)
        except BridgeError:
            db.dispose()
            raise
        except (OperationalError, InterfaceError, DisconnectionError) as exc:
            db.dispose()
            reason, _ = describe_db_error(exc)
            raise StoreUnavailable(
                f"cannot open database {shown_url(settings.database_url)}: {reason}"
            ) from exc
        abi = load_artifact("JobEscrow").abi
        escrow = w3.eth.contract(
            address=Web3.to_checksum_address(settings.contract_address), abi=abi
        )
        account = settings.operator_account
        ce = CEClient(
            settings.ce_url,
            settings.ce_authenticator.get_secret_value(),
            timeout=settings.ce_timeout,
            max_attempts=settings.ce_max_attempts,
            max_download_bytes=settings.max_output_bytes,
        )
        bridge: Bridge
        tx = TxManager(
            w3,
            db,
            account,
            escrow,
            confirmations=settings.confirmation_depth,
            finality_tag=settings.finality_tag,
            fees=FeeOracle(
                w3,
                max_fee_wei=int(settings.max_fee_gwei * 10**9),
                max_tip_wei=int(settings.max_priority_fee_gwei * 10**9),
                percentile=settings.fee_percentile,
                history_blocks=settings.fee_history_blocks,
            ),
            batch_size=settings.batch_size,
            batch_wait=settings.batch_wait,
            stuck_after=settings.tx_stuck_after,
            fee_bump_percent=settings.fee_bump_percent,
            max_fee_wei=int(settings.max_fee_gwei * 10**9),
            on_skipped=lambda job_id, status, error: bridge.on_update_skipped(
                job_id, status, error
            ),
        )
        reader = LogReader(w3, escrow.address, abi)
        bridge = cls(
            settings, db=db, w3=w3, ce=ce, tx=tx, reader=reader, escrow=escrow, chain_id=chain_id
        )
        bridge._process_lock = process_lock
        if paused:
            bridge.dispatch_paused.set()
            log.warning(
                "dispatch of new jobs is paused (stored in the database): new jobs wait "
                "until POST /admin/resume"
            )
        return bridge

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Starts the scanner, worker and transaction threads (after sweeping the output store
        of what a crash left: partial downloads, files no row names)."""
        self.sweep_outputs()
        loops: list[tuple[str, Callable[[], object], float]] = [
            ("ce-scan", self.scan_once, self.settings.scan_interval),
            ("ce-work", self.work_once, self.settings.poll_interval / 4),
            ("ce-tx", self.tx_once, self.settings.tx_interval),
        ]
        for name, step, interval in loops:
            thread = threading.Thread(target=self._loop, args=(name, step, interval), name=name)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the loops and waits for them.

        Each loop finishes its current step, but nothing new starts: jobs still queued for the
        worker pool are skipped, and CE calls are not retried (a request already on the wire
        runs to its answer or ``BRIDGE_CE_TIMEOUT``). Everything left undone is in the database
        and resumed by the next start.
        """
        self._stop.set()
        self.ce.interrupt()
        for thread in self._threads:
            thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.ce.close()
        lock, self._process_lock = self._process_lock, None
        if lock is not None:
            lock.release()

    def sweep_outputs(self) -> tuple[int, int]:
        """Removes partial downloads and unreferenced files from the output store (only while
        no download runs: at start). Returns how many of each were removed."""
        with Session(self.db) as session:
            referenced = set(session.exec(select(OutputFile.sha256)).all())
        partial, unreferenced = self.outputs.sweep(referenced)
        if partial or unreferenced:
            log.info(
                "output store: removed %d partial downloads and %d unreferenced files",
                partial,
                unreferenced,
            )
        return partial, unreferenced

    def _loop(self, name: str, step: Callable[[], object], interval: float) -> None:
        """Runs ``step`` every ``interval`` s until stopped; a failed step backs off.

        A database that cannot be reached costs one log line per back-off (1 s doubling to
        30 s), not a traceback per round; the loop goes on by itself when it is back and says
        so once. An unexpected error logs its traceback once, its repeats one line each.
        """
        backoff = interval
        failures = 0
        last_unexpected = ""
        while not self._stop.is_set():
            try:
                if self._process_lock is not None:
                    self._process_lock.verify()
                step()
                if failures:
                    log.info("%s: working again after %d failed rounds", name, failures)
                backoff, failures, last_unexpected = interval, 0, ""
            except AlreadyRunning as exc:
                self.fatal = str(exc)
                log.error("ALERT %s: %s; this process stops", name, exc)
                self._stop.set()
                return
            except (
                StoreError,
                OperationalError,
                InterfaceError,
                DisconnectionError,
            ) as exc:
                failures += 1
                outage = _db_outage(exc)
                if outage is None:
                    log.warning("%s: %s", name, exc)
                    backoff = min(30.0, backoff * 2)
                else:
                    backoff = min(30.0, max(1.0, backoff * 2))
                    log.warning(
                        "%s: database unavailable (%s); retrying in %.0f s", name, outage, backoff
                    )
            except InsufficientFunds as exc:
                log.error("ALERT %s: %s", name, exc)
                backoff = min(60.0, max(backoff * 2, 5.0))
            except BridgeError as exc:
                failures += 1
                log.warning("%s: %s", name, exc)
                backoff = min(30.0, backoff * 2)
            except Exception as exc:  # the outermost loop: record and go on
                failures += 1
                backoff = min(30.0, backoff * 2)
                seen = f"{type(exc).__name__}: {exc}"
                if seen == last_unexpected:
                    log.error("%s: unexpected error again: %s", name, seen[:300])
                else:
                    log.exception("%s: unexpected error", name)
                last_unexpected = seen
            self._stop.wait(backoff)

    # ------------------------------------------------------------------ dispatch pause

    def set_dispatch_paused(self, paused: bool) -> None:
        """Pauses (or resumes) the dispatch of new jobs to CE. Stored in the database, so it
        survives restarts and holds for every process on it; a change is logged. Idempotent.

        Raises:
            SQLAlchemyError: the database failed (nothing changed).
        """
        with self._pause_lock:
            changed = control.set_dispatch_paused(self.db, paused)
            self._mirror_pause(paused)
        if changed:
            log.warning(
                "dispatch of new jobs %s by the operator (stored: it holds across restarts)",
                "paused" if paused else "resumed",
            )

    def _refresh_pause(self) -> None:
        """Reads the stored pause: another process on the database may have changed it."""
        with self._pause_lock:
            paused = control.dispatch_paused(self.db)
            changed = paused != self.dispatch_paused.is_set()
            self._mirror_pause(paused)
        if changed:
            log.warning(
                "dispatch of new jobs %s (changed in the database)",
                "paused" if paused else "resumed",
            )

    def _mirror_pause(self, paused: bool) -> None:
        if paused:
            self.dispatch_paused.set()
        else:
            self.dispatch_paused.clear()

    # ------------------------------------------------------------------ scanning

    def _start_block(self) -> int:
        if self.settings.start_block is not None:
            return self.settings.start_block
        return find_deployment_block(self.w3, Web3.to_checksum_address(self.contract))

    @property
    def reader_address(self) -> str:
        """The escrow's checksum address."""
        return Web3.to_checksum_address(self.contract)

    def scan_once(self) -> ScanReport | None:
        """Scans the next range of confirmed blocks. Returns None when there was nothing to do."""
        head = self.reader.head()
        safe = self.scan_target(head)
        with Session(self.db) as session:
            cursor = session.get(ScanCursor, self.contract)
            last = cursor.block if cursor else self._start_block() - 1
        rewound = self._check_reorg(last)
        if rewound is not None:
            last = rewound
        if last >= safe:
            return None if rewound is None else ScanReport(last, last, 0, rewound)
        while True:
            to_block = min(safe, last + self._sizer.size)
            to_hash = self.reader.block_hash(to_block)
            if to_hash is None:
                return None  # the chain got shorter under us: try again next round
            try:
                logs = self.reader.fetch(last + 1, to_block)
                break
            except RpcUnavailable as exc:
                if is_range_error(exc) and self._sizer.shrink():
                    continue
                raise
        self._sizer.record(len(logs))
        # The logs and the hash stored for to_block must come from the same chain: a reorg
        # between the two reads would store old-chain jobs under a new-chain hash, and the
        # next round's check could not see it. Read the hash again; on a change, start over.
        if self.reader.block_hash(to_block) != to_hash or any(
            e.at.block_number == to_block and e.at.block_hash != to_hash for e in logs
        ):
            log.warning("the chain changed while blocks %d..%d were read", last + 1, to_block)
            return None
        actions = self._store_scan(last, to_block, to_hash, logs)
        self._run_actions(actions)
        return ScanReport(last + 1, to_block, len(logs), rewound)

    def scan_target(self, head: int) -> int:
        """The last block the scanner reads: ``head - N``, or the node's safe/finalized block
        (``BRIDGE_CONFIRMATIONS``; ``bridge.chain.finality``)."""
        return final_block(self.w3, self.finality, head)

    def _check_reorg(self, cursor_block: int) -> int | None:
        """Returns the block to rewind the cursor to, or None when the chain under it is intact."""
        with Session(self.db) as session:
            seen = session.exec(
                select(SeenBlock)
                .where(SeenBlock.contract == self.contract)
                .order_by(col(SeenBlock.number).desc())
            ).all()
        if not seen or seen[0].number != cursor_block:
            return None
        if self.reader.block_hash(seen[0].number) == seen[0].hash:
            return None
        fork = seen[-1].number - 1
        for block in seen[1:]:
            if self.reader.block_hash(block.number) == block.hash:
                fork = block.number
                break
        log.warning("reorg below block %d: rewinding the scan to block %d", cursor_block, fork)
        with self._lock, Session(self.db) as session:
            session.exec(
                delete(SeenBlock).where(
                    col(SeenBlock.contract) == self.contract, col(SeenBlock.number) > fork
                )
            )
            # Our writes confirmed above the fork may be gone: tracked again, re-sent if so.
            self.tx.reopen_after_reorg(session, fork)
            session.flush()
            # Every job submitted above the fork must be seen again, the same submission,
            # before the re-scan passes the old cursor (_store_scan); meanwhile it is not
            # dispatched and none of its writes is sent.
            suspects = list(
                session.exec(
                    select(Job).where(
                        col(Job.block_number) > fork, col(Job.state) != JobState.ORPHANED
                    )
                ).all()
            )
            for job in suspects:
                job.recheck_until = max(job.recheck_until or 0, cursor_block)
                session.add(job)
            if suspects:
                session.exec(
                    sql_update(Update)
                    .where(
                        col(Update.job_id).in_([j.job_id for j in suspects]),
                        col(Update.applied).is_(None),
                    )
                    .values(held=True)
                )
                log.warning(
                    "jobs %s were submitted above the fork: re-checking them",
                    [j.job_id for j in suspects],
                )
            cursor = session.get(ScanCursor, self.contract)
            if cursor is not None:
                cursor.block = fork
                session.add(cursor)
            session.commit()
        return fork

    def _store_scan(
        self, last: int, to_block: int, to_hash: str, logs: list[ChainLog]
    ) -> list[tuple[int, m.Decision]]:
        actions: list[tuple[int, m.Decision]] = []
        with self._lock, Session(self.db) as session:
            for entry in logs:
                if isinstance(entry, SubmittedLog):
                    stored = self._store_submission(session, entry)
                    if stored is not None and stored[1].actions:
                        actions.append(stored)
                    continue
                job = session.get(Job, entry.job_id)
                if job is None:
                    continue  # a job from before our start block
                if isinstance(entry, CancelRequestedLog):
                    event: m.Event = m.CancelRequestedSeen()
                elif isinstance(entry, StatusLog):
                    job.onchain_status = max(job.onchain_status, int(entry.status))
                    session.add(job)
                    if not entry.status.is_terminal:
                        continue
                    event = m.SettledOnChain(entry.status)
                decision = self._apply(session, job, event)
                if decision is not None and decision.actions:
                    actions.append((job.job_id, decision))
            # The re-scan passed the old cursor: a job not seen again has no submission now.
            for job in session.exec(
                select(Job).where(
                    col(Job.recheck_until).is_not(None), col(Job.recheck_until) <= to_block
                )
            ).all():
                decision = self._orphan(session, job)
                if decision is not None and decision.actions:
                    actions.append((job.job_id, decision))
            cursor = session.get(ScanCursor, self.contract) or ScanCursor(
                contract=self.contract, block=to_block
            )
            cursor.block = to_block
            cursor.updated_at = utcnow()
            session.add(cursor)
            session.merge(SeenBlock(contract=self.contract, number=to_block, hash=to_hash))
            session.exec(
                delete(SeenBlock).where(
                    col(SeenBlock.contract) == self.contract,
                    col(SeenBlock.number) < to_block - self.settings.reorg_depth,
                )
            )
            session.commit()
        if logs:
            log.info("scanned blocks %d..%d: %d events", last + 1, to_block, len(logs))
        return actions

    def _store_submission(
        self, session: Session, entry: SubmittedLog
    ) -> tuple[int, m.Decision] | None:
        """Stores a new job, or matches a known one; returns a decision whose actions to run."""
        existing = session.get(Job, entry.job_id)
        at = entry.at
        generation = 0
        decision = None
        if existing is not None:
            same = (
                existing.tx_hash.lower() == at.tx_hash.lower()
                and existing.spec_hash == "0x" + entry.spec_hash.hex()
                and existing.state != JobState.ORPHANED
            )
            if same:
                # The same submission, seen again after a rewind (perhaps in another block):
                # keep the bridge's progress, refresh the position, release held writes.
                existing.block_number, existing.block_hash = at.block_number, at.block_hash
                existing.tx_hash, existing.log_index = at.tx_hash, at.log_index
                if existing.recheck_until is not None:
                    existing.recheck_until = None
                    self._hold_updates(session, existing.job_id, held=False)
                    log.info("job %d: submission seen again after the reorg", existing.job_id)
                session.add(existing)
                return None
            # A different submission got this job id after a reorg: the old one is orphaned
            # (its remote job cancelled, its writes dropped) and the new one starts afresh
            # under the next generation of the id, so it gets its own remote job.
            decision = self._orphan(session, existing)
            generation = existing.generation + 1
            session.exec(delete(OutputFile).where(col(OutputFile.job_id) == existing.job_id))
            session.delete(existing)
            session.flush()
            log.warning(
                "job %d: id reused by another submission (tx %s) after a reorg: generation %d",
                entry.job_id,
                at.tx_hash,
                generation,
                extra={"job_id": entry.job_id, "tx_hash": at.tx_hash},
            )
        spec_error: str | None = None
        if entry.unreadable is not None:
            spec_error = entry.unreadable  # failed on-chain with this reason, and refunded
        elif not entry.spec_hash_matches:
            spec_error = "the event's spec does not match its specHash"
        else:
            try:
                spec_to_request(entry.spec)
            except SpecError as exc:
                spec_error = str(exc)
        session.add(
            Job(
                job_id=entry.job_id,
                requester=entry.requester,
                spec_json=spec_to_json(entry.spec),
                spec_hash="0x" + entry.spec_hash.hex(),
                spec_error=spec_error,
                payment_wei=str(entry.payment),
                deadline=entry.deadline,
                block_number=at.block_number,
                block_hash=at.block_hash,
                tx_hash=at.tx_hash,
                log_index=at.log_index,
                callback_gas_limit=entry.callback_gas_limit,
                generation=generation,
            )
        )
        log.info(
            "job %d: submitted by %s in block %d, tx %s%s",
            entry.job_id,
            entry.requester,
            at.block_number,
            at.tx_hash,
            f" (cannot run: {spec_error})" if spec_error else "",
            extra={"job_id": entry.job_id, "tx_hash": at.tx_hash},
        )
        return None if decision is None else (entry.job_id, decision)

    def _orphan(self, session: Session, job: Job) -> m.Decision | None:
        """Records that ``job``'s submission is gone (a reorg deeper than the confirmations).

        The machine moves it to ``orphaned`` (queueing the cancellation of a live remote job)
        and every write of it not yet known to be on-chain is dropped, so that none can land
        on a job that gets its id on the new chain. The caller commits.
        """
        decision = self._apply(session, job, m.SubmissionReorged())
        job.recheck_until = None
        session.add(job)
        session.exec(
            sql_update(Update)
            .where(col(Update.job_id) == job.job_id, col(Update.applied).is_(None))
            .values(applied=False, held=False, skip_reason=DROPPED)
        )
        log.warning(
            "job %d: its submission (tx %s) is gone from the chain: orphaned",
            job.job_id,
            job.tx_hash,
            extra={"job_id": job.job_id, "remote_job_id": job.remote_job_id},
        )
        return decision

    @staticmethod
    def _hold_updates(session: Session, job_id: int, *, held: bool) -> None:
        session.exec(
            sql_update(Update)
            .where(col(Update.job_id) == job_id, col(Update.applied).is_(None))
            .values(held=held)
        )

    # ------------------------------------------------------------------ state changes

    def _apply(self, session: Session, job: Job, event: m.Event) -> m.Decision | None:
        """Applies ``event`` to ``job`` inside ``session`` (the caller commits)."""
        outcome = m.transition(_view(job), event)
        if isinstance(outcome, m.Rejection):
            log.debug("job %d: %s ignored: %s", job.job_id, type(event).__name__, outcome.reason)
            return None
        previous = job.state
        job.state = outcome.state
        if outcome.remote_job_id is not None:
            job.remote_job_id = outcome.remote_job_id
        if outcome.remote_status is not None:
            job.remote_status = outcome.remote_status
        if outcome.cancel_requested is not None:
            job.cancel_requested = outcome.cancel_requested
        if outcome.outcome is not None and outcome.state is JobState.SETTLING:
            job.outcome = int(outcome.outcome)
        if outcome.state is JobState.SETTLED and outcome.outcome is not None:
            job.onchain_status = max(job.onchain_status, int(outcome.outcome))
        job.attempts = 0
        job.next_attempt_at = 0.0
        job.updated_at = utcnow()
        for update in outcome.updates:
            data = update.data
            if update.status in (Status.FAILED, Status.CANCELLED):
                data = cap_reason(data)  # CE's or an operator's text: bounded on-chain
                job.reason = data
            if update.status is Status.COMPLETED:
                job.result_hash = "0x" + update.result_hash.hex()
                job.result_uri = update.data
            session.add(
                Update(
                    job_id=job.job_id,
                    status=int(update.status),
                    result_hash="0x" + update.result_hash.hex(),
                    data=data,
                    held=job.recheck_until is not None,  # its submission is being re-checked
                )
            )
        if (
            previous == JobState.NEW
            and job.state != JobState.NEW
            and job.remote_job_id is None
            and job.create_sent_at is not None
        ):
            # job-create was sent and its answer never stored (a crash, a lost answer, or one
            # still in flight): CE may run a job nobody follows. Find it by its key, cancel it.
            session.add(
                RemoteCancel(
                    job_id=job.job_id,
                    remote_job_id="",
                    reason=f"job-create may have reached CE before the job became {job.state}",
                    idempotency_key=idempotency_key(
                        self.chain_id, self.contract, job.job_id, job.generation
                    ),
                    request_json=job.spec_json,
                )
            )
        if m.RemoteAction.CANCEL_REMOTE in outcome.actions and job.remote_job_id:
            # Queued with the state change: a crash before the call cannot lose it.
            session.add(
                RemoteCancel(
                    job_id=job.job_id, remote_job_id=job.remote_job_id, reason=outcome.reason
                )
            )
        session.add(job)
        if previous != job.state:
            log.info(
                "job %d: %s -> %s (%s)",
                job.job_id,
                previous,
                job.state,
                outcome.reason,
                extra={"job_id": job.job_id, "remote_job_id": job.remote_job_id},
            )
        return outcome

    def _commit_event(
        self,
        job_id: int,
        event: m.Event,
        expect: JobState | None = None,
        generation: int | None = None,
        *,
        calls: Iterable[_Call] = (),
        repoll: bool = False,
    ) -> m.Decision | None:
        """Applies ``event`` if the job is still in state ``expect`` (and, if given, still the
        submission of that ``generation``: a reorg may have given its id to another one);
        runs the remote actions.

        ``calls`` (the CE calls the event came from) are recorded in the same transaction,
        whether or not the event applies. With ``repoll``, a job left in ``expect`` (the event
        refused or not moving it) is polled again after ``poll_interval``, in that transaction.
        """
        with self._lock, Session(self.db) as session:
            for kind, ok, detail in calls:
                session.add(RemoteCall(job_id=job_id, kind=kind, ok=ok, detail=detail))
            job = session.get(Job, job_id)
            if (
                job is None
                or (expect is not None and job.state != expect)
                or (generation is not None and job.generation != generation)
            ):
                session.commit()
                return None
            decision = self._apply(session, job, event)
            if repoll and job.state == expect:
                job.next_attempt_at = self._clock() + self.settings.poll_interval
                session.add(job)
            session.commit()
        if decision is not None and decision.actions:
            self._run_actions([(job_id, decision)])
        return decision

    def _run_actions(self, actions: Iterable[tuple[int, m.Decision]]) -> None:
        """Sends at once the remote cancellations the decisions queued (the worker retries any
        that fail: see ``_due_cancels``)."""
        jobs = [j for j, d in actions if m.RemoteAction.CANCEL_REMOTE in d.actions]
        if jobs:
            for row in self._due_cancels(jobs):
                self._send_cancel(row)

    def _due_cancels(self, job_ids: list[int] | None = None) -> list[RemoteCancel]:
        """Queued remote cancellations not yet answered and due (of ``job_ids``, if given)."""
        query = select(RemoteCancel).where(
            col(RemoteCancel.done_at).is_(None), col(RemoteCancel.next_attempt_at) <= self._clock()
        )
        if job_ids is not None:
            query = query.where(col(RemoteCancel.job_id).in_(job_ids))
        with Session(self.db, expire_on_commit=False) as session:
            return list(session.exec(query.order_by(col(RemoteCancel.id)).limit(64)).all())

    def _send_cancel(self, row: RemoteCancel) -> None:
        """Asks CE to cancel one queued remote job; records the answer or schedules a retry."""
        if self._stop.is_set():
            return
        done, error, status = True, None, None
        try:
            if not row.remote_job_id:
                row.remote_job_id = self._find_remote(row)
                if not row.remote_job_id:
                    raise RemoteRejected("no remote job under its Idempotency-Key", 404)
            status = self.ce.cancel_job(row.remote_job_id)
        except RemoteAuthError as exc:
            done, error = False, str(exc)  # the account, not the job: try again later
        except RemoteRejected as exc:
            error = str(exc)  # CE does not know the job or will not cancel it: nothing to redo
        except RemoteError as exc:
            done, error = False, str(exc)
        if done:
            detail = row.remote_job_id if error is None else f"{row.remote_job_id}: {error}"
            call = RemoteCall(job_id=row.job_id, kind="cancel", ok=error is None, detail=detail)
        else:
            call = RemoteCall(job_id=row.job_id, kind="cancel", ok=False, detail=error)
            log.warning(
                "job %d: remote cancel failed, will retry: %s",
                row.job_id,
                error,
                extra={"job_id": row.job_id, "remote_job_id": row.remote_job_id},
            )
        with self._lock, Session(self.db) as session:
            session.add(call)  # recorded with the outcome: one commit
            fresh = session.get(RemoteCancel, row.id)
            if fresh is None or fresh.done_at is not None:
                session.commit()
                return
            if row.remote_job_id:
                fresh.remote_job_id = row.remote_job_id  # found by its key
            if done:
                fresh.done_at, fresh.last_error = utcnow(), error
            else:
                fresh.attempts += 1
                fresh.last_error = error
                fresh.next_attempt_at = self._clock() + min(300.0, 2.0 ** min(fresh.attempts, 9))
            session.add(fresh)
            session.commit()
        if done and error is None:
            log.info(
                "job %d: remote job %s cancelled (%s)",
                row.job_id,
                row.remote_job_id,
                status,
                extra={"job_id": row.job_id, "remote_job_id": row.remote_job_id},
            )

    def _find_remote(self, row: RemoteCancel) -> str:
        """The remote job a lost ``job-create`` made, if any: the same request is sent again
        under the same key, which a server honouring the key answers with that job (and
        otherwise creates one, cancelled next all the same).

        Raises:
            RemoteRejected: CE refuses the request (so it made no job for it either).
            RemoteError: CE failed; tried again later.
        """
        if not row.idempotency_key or not row.request_json:
            return ""
        try:
            request = spec_to_request(spec_from_json(row.request_json))
        except SpecError:
            return ""
        return self.ce.create_job(request, row.idempotency_key)

    def on_update_skipped(self, job_id: int, status: int, error: str) -> None:
        """Called by the transaction manager for each update the contract skipped."""
        log.warning(
            "job %d: update to status %d skipped on-chain: %s",
            job_id,
            status,
            error,
            extra={"job_id": job_id},
        )
        if status >= int(Status.COMPLETED):
            self._commit_event(job_id, m.TerminalUpdateSkipped(error), JobState.SETTLING)

    # ------------------------------------------------------------------ work

    def work_once(self) -> int:
        """Works every open job that is due; returns how many were worked."""
        now = self._clock()
        chain_now = self.reader.block_timestamp()
        self._refresh_pause()
        states = [
            s for s in _WORK_STATES if not (s is JobState.NEW and self.dispatch_paused.is_set())
        ]
        due = due_jobs(self.db, states, now)
        futures = [self._pool.submit(self._work_job, job_id, chain_now) for job_id in due]
        futures += [self._pool.submit(self._send_cancel, row) for row in self._due_cancels()]
        for future in futures:
            try:
                future.result()
            except Exception:  # one task's failure must not stop the others' round
                log.exception("a worker task failed; the round goes on")
        return len(due)

    def _work_job(self, job_id: int, chain_now: int) -> None:
        if self._stop.is_set():
            return  # stopping: the job stays due and the next start works it
        with Session(self.db) as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            session.expunge(job)
        state = JobState(job.state)
        try:
            if chain_now >= job.deadline - self.settings.deadline_margin and state in (
                JobState.NEW,
                JobState.DISPATCHED,
                JobState.RUNNING,
                JobState.CANCELLING,
                JobState.FINISHING,  # downloads that keep failing must not outlive the deadline
            ):
                self._commit_event(job_id, m.DeadlineNear(), state)
            elif state is JobState.NEW:
                self._dispatch(job)
            elif state is JobState.FINISHING:
                self._finish(job)
            else:
                self._poll(job)
        except RemoteError as exc:
            if self._stop.is_set():
                return  # a call cut short by the shutdown is not a failed attempt
            prefix = "CE refused: " if isinstance(exc, RemoteRejected) else ""
            self._retry_later(job, f"{prefix}{exc}")
        except RpcUnavailable as exc:
            # The node's failure, not CE's: retried, but never counted against the job-create
            # budget (a node outage must not fail jobs on-chain as "CE unavailable").
            self._retry_later(job, str(exc), counted=False)
        except Exception as exc:  # this job's boundary: its unexpected error stays its own
            if self._stop.is_set():
                return
            # Logged once here with its traceback and job id; the job alone backs off
            # (exponentially, per job) while every other job keeps its pace.
            log.exception(
                "job %d: unexpected error in state %s",
                job.job_id,
                state,
                extra={"job_id": job.job_id, "remote_job_id": job.remote_job_id},
            )
            self._retry_later(job, f"unexpected error ({exc.__class__.__name__})", logged=True)

    def _retry_later(
        self, job: Job, message: str, *, counted: bool = True, logged: bool = False
    ) -> None:
        with self._lock, Session(self.db) as session:
            fresh = session.get(Job, job.job_id)
            if fresh is None or fresh.state != job.state:
                return
            if counted:
                fresh.attempts += 1
            fresh.remote_error = message
            delay = min(60.0, 0.5 * 2 ** min(max(fresh.attempts, 1), 7))
            fresh.next_attempt_at = self._clock() + delay
            session.add(fresh)
            session.commit()
            attempts = fresh.attempts
        if not logged:
            log.warning(
                "job %d: attempt %d failed: %s",
                job.job_id,
                attempts,
                message,
                extra={"job_id": job.job_id, "remote_job_id": job.remote_job_id},
            )
        if counted and job.state == JobState.NEW and attempts >= self.settings.create_retry_budget:
            self._commit_event(job.job_id, m.CreateGaveUp(message), JobState.NEW)

    def _dispatch(self, job: Job) -> None:
        if job.spec_error:
            self._commit_event(job.job_id, m.SpecInvalid(job.spec_error), JobState.NEW)
            return
        try:
            request = spec_to_request(spec_from_json(job.spec_json))
        except SpecError as exc:
            self._commit_event(job.job_id, m.SpecInvalid(str(exc)), JobState.NEW)
            return
        if job.recheck_until is not None:
            # A reorg went under its submission: not dispatched until it is seen again.
            self._schedule_poll(job.job_id, JobState.NEW)
            return
        if self._settled_at_head(job):
            # Cancelled (or expired) in a block not yet confirmed: creating a remote job now would
            # only waste compute. The confirmed event will settle it; if a reorg removes that
            # block, the job is dispatched then.
            self._schedule_poll(job.job_id, JobState.NEW)
            return
        key = idempotency_key(self.chain_id, self.contract, job.job_id, job.generation)
        if job.create_sent_at is None and not self._mark_create_sent(job):
            return  # the job moved on meanwhile
        try:
            remote_id = self.ce.create_job(request, key)
        except RemoteRejected as exc:
            self._commit_event(
                job.job_id,
                m.CreateRejected(str(exc)),
                JobState.NEW,
                job.generation,
                calls=[("create", False, str(exc))],
            )
            return
        except RemoteError as exc:
            self._record_call(job.job_id, "create", False, str(exc))
            raise
        created = m.RemoteCreated(remote_id)
        # The call's record and the remote job id are stored together: one commit, not two.
        call: _Call = ("create", True, remote_id)
        if (
            self._commit_event(job.job_id, created, JobState.NEW, job.generation, calls=[call])
            is None
        ):
            # The job moved on while job-create was in flight (cancelled or settled on-chain
            # meanwhile): nobody will follow this remote job, so it must not keep running.
            self._cancel_stray(job.job_id, remote_id)

    def _mark_create_sent(self, job: Job) -> bool:
        """Records, before the first job-create of ``job`` is sent, that CE may have a job for
        it from now on (see ``_apply``). False if the job is no longer new."""
        with self._lock, Session(self.db) as session:
            fresh = session.get(Job, job.job_id)
            if fresh is None or fresh.state != JobState.NEW or fresh.generation != job.generation:
                return False
            fresh.create_sent_at = self._clock()
            session.add(fresh)
            session.commit()
        return True

    def _cancel_stray(self, job_id: int, remote_id: str) -> None:
        """Queues and sends the cancellation of a remote job its job did not take."""
        with self._lock, Session(self.db) as session:
            job = session.get(Job, job_id)
            if job is not None and job.remote_job_id == remote_id:
                return  # it did take it after all
            reason = "remote job created after its job had ended"
            session.add(RemoteCancel(job_id=job_id, remote_job_id=remote_id, reason=reason))
            session.commit()
        log.warning("job %d: %s: cancelling remote job %s", job_id, reason, remote_id)
        for row in self._due_cancels([job_id]):
            self._send_cancel(row)

    def _settled_at_head(self, job: Job) -> bool:
        """Whether ``job`` (loaded as new) was settled on-chain meanwhile: a terminal event of it
        in the blocks above the scan cursor, or one the scanner stored since it was loaded.

        The blocks above the cursor are read once for every job (``_head_settled``), not with a
        ``getJob`` call per job; the database is read again because the snapshot may come from
        after the job was loaded, when the scanner may have settled it below its cursor.
        """
        if job.job_id in self._head_settled():
            return True
        with Session(self.db) as session:
            state = session.exec(select(Job.state).where(col(Job.job_id) == job.job_id)).first()
        return state != job.state

    def _head_settled(self) -> set[int]:
        """Ids of the jobs with a terminal event above the scan cursor, at most
        ``poll_interval / 4`` (the worker's round) old."""
        with self._head_lock:
            now = time.monotonic()
            if (
                self._head_cache is None
                or now - self._head_cache[0] > self.settings.poll_interval / 4
            ):
                # The cursor first: a settlement the scanner stores after this read is at a
                # block above it, so in the logs read next if that block is already mined.
                with Session(self.db) as session:
                    cursor = session.get(ScanCursor, self.contract)
                    last = cursor.block if cursor else self._start_block() - 1
                head = self.reader.head()
                settled = self.reader.terminal_job_ids(last + 1, head) if head > last else set()
                self._head_cache = (now, settled)
            return self._head_cache[1]

    def _status(self, job: Job, calls: list[_Call] | None = None) -> RemoteJobStatus:
        """CE's status of the job's remote job. A changed status is recorded as a call: into
        ``calls`` if given (the caller stores it with the state change), else at once."""
        assert job.remote_job_id is not None
        try:
            status = self.ce.job_status(job.remote_job_id)
        except RemoteError as exc:
            self._record_call(job.job_id, "status", False, str(exc))
            raise
        if status.status != job.remote_status:
            if calls is None:
                self._record_call(job.job_id, "status", True, status.status)
            else:
                calls.append(("status", True, status.status))
        return status

    def _poll(self, job: Job) -> None:
        state = JobState(job.state)
        calls: list[_Call] = []
        status = self._status(job, calls)
        if state is JobState.CANCELLING and not status.is_terminal:
            try:
                self.ce.cancel_job(job.remote_job_id or "")
            except RemoteError:
                self._record_calls(job.job_id, calls)
                raise
            calls.append(("cancel", True, job.remote_job_id))
        decision = self._commit_event(
            job.job_id,
            m.RemoteStatusSeen(status.status, status.error),
            state,
            job.generation,
            calls=calls,
            repoll=True,
        )
        if decision is not None and decision.state is JobState.FINISHING:
            self._finish(job, status)

    def _schedule_poll(self, job_id: int, state: JobState) -> None:
        with self._lock, Session(self.db) as session:
            job = session.get(Job, job_id)
            if job is not None and job.state == state:
                job.next_attempt_at = self._clock() + self.settings.poll_interval
                session.add(job)
                session.commit()

    def _finish(self, job: Job, status: RemoteJobStatus | None = None) -> None:
        """Downloads the outputs into the file store (streamed, hashed as they arrive), then
        stores their rows and queues ``Completed`` in one commit. A listing or a file over the
        job's limits (``max_output_files``, ``max_job_output_bytes``, ``max_output_bytes``
        per file) fails the job with "outputs too large"."""
        status = status or self._status(job)
        settings = self.settings
        stored: dict[str, StoredObject] = {}
        try:
            if len(status.output_files) > settings.max_output_files:
                raise OutputTooLarge(
                    f"{len(status.output_files)} files, over the limit of "
                    f"{settings.max_output_files}"
                )
            total = 0
            for output in status.output_files:
                path = safe_relative_path(output.filename)
                if path in stored:
                    raise SpecError(f"output file {ascii(path)[:120]} is listed twice")
                left = settings.max_job_output_bytes - total
                cap = min(settings.max_output_bytes, left)
                with self.outputs.partial() as part:
                    try:
                        self.ce.download_into(output.url, part, cap)
                    except OutputTooLarge as exc:
                        if cap < settings.max_output_bytes:
                            raise OutputTooLarge(
                                f"over the job's limit of {settings.max_job_output_bytes} bytes"
                            ) from exc
                        raise
                    stored[path] = part.commit()
                total += stored[path].size
        except OutputTooLarge as exc:
            self._commit_event(
                job.job_id,
                m.OutputsUnavailable(f"outputs too large: {exc}"),
                JobState.FINISHING,
                calls=[("download", False, f"outputs too large: {exc}")],
            )
            return
        except (DownloadRefused, SpecError) as exc:
            self._commit_event(
                job.job_id,
                m.OutputsUnavailable(str(exc)),
                JobState.FINISHING,
                calls=[("download", False, str(exc))],
            )
            return
        digest = hashlib.sha256(
            manifest_from_digests({p: o.sha256 for p, o in stored.items()})
        ).digest()
        uri = f"{self._public_url()}/jobs/{job.job_id}/outputs/"
        with self._lock, Session(self.db) as session:
            fresh = session.get(Job, job.job_id)
            if fresh is None or fresh.state != JobState.FINISHING:
                return
            if fresh.generation != job.generation:
                return
            session.exec(delete(OutputFile).where(col(OutputFile.job_id) == job.job_id))
            for path, obj in stored.items():
                session.add(
                    OutputFile(job_id=job.job_id, path=path, sha256=obj.sha256, size=obj.size)
                )
            self._apply(session, fresh, m.OutputsHashed(digest, uri))
            session.add(
                RemoteCall(
                    job_id=job.job_id,
                    kind="download",
                    ok=True,
                    detail=f"{len(stored)} files, {sum(o.size for o in stored.values())} bytes",
                )
            )
            session.commit()

    def _public_url(self) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def _record_call(self, job_id: int, kind: str, ok: bool, detail: str | None) -> None:
        self._record_calls(job_id, [(kind, ok, detail)])

    def _record_calls(self, job_id: int, calls: Iterable[_Call]) -> None:
        """Records CE calls that lead to no state change (those that do are recorded with it,
        see ``_commit_event``)."""
        rows = [RemoteCall(job_id=job_id, kind=k, ok=ok, detail=d) for k, ok, d in calls]
        if not rows:
            return
        with Session(self.db) as session:
            session.add_all(rows)
            session.commit()

    # ------------------------------------------------------------------ operator actions (api)

    def retry_job(self, job_id: int) -> JobState:
        """Makes an open job due at once: clears its failed attempts and backoff.

        Returns:
            The job's state (unchanged: the worker retries its current step).

        Raises:
            JobNotFound: no such job.
            JobConflict: the job is not open (settled or orphaned).
        """
        with self._lock, Session(self.db) as session:
            job = session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            state = JobState(job.state)
            if not state.is_open:
                raise JobConflict(f"job {job_id} is {state}: there is nothing to retry")
            job.attempts, job.next_attempt_at, job.updated_at = 0, 0.0, utcnow()
            session.add(job)
            session.commit()
        log.info("job %d: retry requested by the operator", job_id, extra={"job_id": job_id})
        return state

    def fail_job(self, job_id: int, reason: str) -> m.Decision:
        """Fails an open job on-chain through the machine (``AdminFail``): a ``Failed`` update
        with the reason is queued (the requester is refunded) and the remote job cancelled.

        Raises:
            JobNotFound: no such job.
            JobConflict: the machine refuses: the job is not open, or a terminal update is
                already queued.
        """
        event = m.AdminFail(reason)
        with Session(self.db) as session:
            job = session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            state = JobState(job.state)
            outcome = m.transition(_view(job), event)
        if isinstance(outcome, m.Rejection):
            raise JobConflict(f"job {job_id} cannot be failed: {outcome.reason}")
        decision = self._commit_event(job_id, event, state)
        if decision is None:
            raise JobConflict(f"job {job_id} changed state meanwhile; try again")
        return decision

    # ------------------------------------------------------------------ transactions

    def tx_once(self) -> None:
        """One round of the transaction manager, unless a reorg the scanner has not handled yet
        went under the scan cursor: then the writes wait for the re-check (a write re-sent
        before it could land on a job that the new chain gave another submission)."""
        if not self._scan_view_current():
            log.info("the chain changed under the scan cursor: writes wait for the re-scan")
            return
        self.tx.tick()

    def _scan_view_current(self) -> bool:
        """Whether the block at the scan cursor still has the hash the scanner stored."""
        with Session(self.db) as session:
            cursor = session.get(ScanCursor, self.contract)
            seen = None if cursor is None else session.get(SeenBlock, (self.contract, cursor.block))
        if seen is None:
            return True
        return self.reader.block_hash(seen.number) == seen.hash

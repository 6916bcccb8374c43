"""The bridge: the engine's roles composed, their loops run, and the operator's actions.

``Bridge`` builds the roles over one database and runs each in a loop thread:

1. the scanner (``bridge.engine.scanner``): the chain into the store, with reorg repair;
2. the CE worker (``bridge.engine.worker``): create, poll, cancel and download per due job,
   and the cancel outbox's retries (``bridge.engine.cancels``);
3. the writer (``bridge.tx.manager.TxManager``): queued updates batched into ``applyUpdates``.

They share no state but the database: every job change is one unit of work
(``bridge.store.uow``) applied by the ``JobLedger`` under the store's lock, with the updates it
queues, the CE calls it came from and any remote job to cancel; what a job does next is the
machine's decision (``bridge.engine.machine``), not the loop's. The writer reports skipped
updates to the ledger through a callable built before either (no reference back into
``Bridge``). The admin actions (retry, fail, pause) go through the same ledger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlmodel import Session, col, select
from web3 import Web3
from web3.contract import Contract

from bridge.chain.artifacts import load_artifact
from bridge.chain.deploy import connect
from bridge.chain.reader import LogReader
from bridge.config import Settings
from bridge.engine import machine as m
from bridge.engine.codec import spec_from_json, spec_to_json, spec_to_request
from bridge.engine.core import Core
from bridge.engine.ledger import DROPPED, job_view
from bridge.engine.scanner import Scanner, ScanReport
from bridge.engine.states import JobState
from bridge.engine.worker import DispatchPause, Worker
from bridge.errors import (
    AlreadyRunning,
    BridgeError,
    InsufficientFunds,
    JobConflict,
    JobNotFound,
    RpcUnavailable,
    StoreError,
    StoreUnavailable,
)
from bridge.logs import install_redaction, redact_url
from bridge.outputs import OutputStore
from bridge.remote.client import CEClient
from bridge.retry import Backoff
from bridge.store import control
from bridge.store.db import describe_db_error, open_database, shown_url
from bridge.store.locks import Leadership, ProcessLock, acquire_leadership, scanner_label
from bridge.store.models import Job, OutputFile, utcnow
from bridge.tx.fees import FeeOracle
from bridge.tx.manager import TxManager

log = logging.getLogger("bridge.engine")

__all__ = [
    "DROPPED",
    "Bridge",
    "ScanReport",
    "spec_from_json",
    "spec_to_json",
    "spec_to_request",
]


#: Seconds since its last write before a shared store's unreferenced file is swept.
SHARED_SWEEP_AGE = 3600.0
#: Connections to CE kept alive beyond ``BRIDGE_CE_CONCURRENCY``: the readiness probe's
#: (``/readyz``) and the admin routes' calls, made beside the worker's.
CE_SPARE_CONNECTIONS = 8


def claim_holder(operator: str, *, standby: bool) -> str:
    """The lease holder this process writes on the CE work it claims: its operator address
    (a restart with the key takes its own leases back at once), or, for a process that
    started as the ``standby`` of its key's writer, the address and its pid (two live
    processes with one key never share a holder, so never work the same job at once)."""
    return f"{operator} pid {os.getpid()}" if standby else operator


def _scan_behind(report: object) -> bool:
    """Whether a scan round left confirmed blocks unread (``ScanReport.behind``)."""
    return isinstance(report, ScanReport) and report.behind


def _db_outage(exc: BaseException) -> str | None:
    """Why the database is unreachable, if that is what ``exc`` (or its cause) says; else None."""
    for error in (exc, exc.__cause__):
        if isinstance(error, StoreUnavailable):
            return str(error)
        if isinstance(error, (OperationalError, InterfaceError, DisconnectionError)):
            reason, transient = describe_db_error(error)
            return reason if transient else None
    return None


class Bridge:
    """One bridge process: the scanner, the CE worker and the writer over one database.

    Args:
        settings: the bridge's settings.
        db, w3, ce, tx, reader, escrow, chain_id: its services (``from_settings`` builds them).
        clock: epoch seconds.
        core: the store, cancel outbox and ledger, when built before ``tx`` (``from_settings``
            does, to hand ``tx`` the ledger's ``on_update_skipped``); else built here.
    """

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
        core: Core | None = None,
        leadership: Leadership | None = None,
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
        core = core or Core.build(settings, db, ce, chain_id, clock, holder=tx.sender)
        self.claims = core.claims
        self.store, self.cancels, self.ledger = core.store, core.cancels, core.ledger
        self._stop = core.stopping
        self.outputs = OutputStore(settings.output_root, inline_bytes=settings.output_inline_bytes)
        self.pause = DispatchPause(db)
        #: Mirror of the stored pause (``control.dispatch_paused``), read each worker round.
        self.dispatch_paused = self.pause.event
        self.scanner = Scanner(
            core,
            reader=reader,
            w3=w3,
            reopen=lambda session, fork: tx.reopen_after_reorg(session, fork),
            leadership=leadership,
        )
        self.worker = Worker(
            core,
            ce=ce,
            reader=reader,
            outputs=self.outputs,
            pause=self.pause,
            cursor=self.scanner.cursor,
            chain_id=chain_id,
        )
        #: Confirmations by count or by the node's safe/finalized tag (``scan_target``).
        self.finality = self.scanner.finality
        self._threads: list[threading.Thread] = []
        self._process_lock: ProcessLock | None = None
        #: Whether this process sends its key's transactions (False: it stands by while another
        #: process with the same key holds the key's writer; ``tx_once`` takes over).
        self.writer_active = True
        #: Why the bridge stopped itself (e.g. its process lock was taken), or None.
        self.fatal: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        process_lock: ProcessLock | None = None,
        migrate_apart: bool = False,
    ) -> Bridge:
        """Builds a bridge from its settings: opens (and migrates) the database, connects, and
        binds the database to the node's chain id and the contract (``control.bind``).

        Args:
            process_lock: held for this process (``acquire_process_lock``); the bridge owns it
                from here, checks it in its loops and releases it in ``stop()``.
            migrate_apart: a due migration runs in a child process (``open_database``).

        Raises:
            DatabaseBound: the database belongs to another chain or contract (nothing written).
            StoreUnavailable, RpcUnavailable: the database or the node cannot be reached.
            AlreadyRunning: another process took the key's writer after this one held it.
        """
        install_redaction(*settings.rpc_endpoints)  # provider keys in URLs never reach a log
        writer_active = process_lock is None or process_lock.held()  # before anything opens
        db = open_database(settings.database_url, migrate_apart=migrate_apart)
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
            # The worker's calls, and room for the cancel outbox's and the API's own.
            max_connections=settings.ce_concurrency + CE_SPARE_CONNECTIONS,
        )
        holder = claim_holder(account.address, standby=not writer_active)
        core = Core.build(settings, db, ce, chain_id, time.time, holder=holder)
        tx = TxManager(
            w3,
            db,
            account,
            escrow,
            confirmations=settings.confirmation_depth,
            finality_tag=settings.finality_tag,
            fees=FeeOracle(
                w3,
                max_fee_wei=settings.max_fee_wei,
                max_tip_wei=settings.max_tip_wei,
                percentile=settings.fee_percentile,
                history_blocks=settings.fee_history_blocks,
            ),
            batch_size=settings.batch_size,
            batch_wait=settings.batch_wait,
            max_inflight=settings.max_inflight,
            stuck_after=settings.tx_stuck_after,
            fee_bump_percent=settings.fee_bump_percent,
            max_fee_wei=settings.max_fee_wei,
            on_skipped=core.ledger.on_update_skipped,
            adopt_after=settings.claim_lease,
            write_lock=core.store.lock,
        )
        leadership = acquire_leadership(
            settings.database_url, scanner_label(chain_id, escrow.address), role="scanner"
        )
        bridge = cls(
            settings,
            db=db,
            w3=w3,
            ce=ce,
            tx=tx,
            reader=LogReader(w3, escrow.address, abi),
            escrow=escrow,
            chain_id=chain_id,
            core=core,
            leadership=leadership,
        )
        bridge._process_lock = process_lock
        bridge.writer_active = writer_active
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
        loops: list[tuple[str, Callable[[], object], float, Callable[[object], bool] | None]] = [
            ("ce-scan", self.scan_once, self.settings.scan_interval, _scan_behind),
            ("ce-work", self.work_once, self.settings.poll_interval / 4, None),
            ("ce-tx", self.tx_once, self.settings.tx_interval, None),
        ]
        for name, step, interval, again in loops:
            thread = threading.Thread(
                target=self._loop, args=(name, step, interval, again), name=name
            )
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
        self.worker.close()
        self.scanner.leadership.release()
        self.ce.close()
        lock, self._process_lock = self._process_lock, None
        if lock is not None:
            lock.release()

    def sweep_outputs(self) -> tuple[int, int]:
        """Removes partial downloads and unreferenced files from the output store (only while
        no download runs: at start). Returns how many of each were removed."""
        with Session(self.db) as session:
            referenced = set(
                session.exec(
                    select(OutputFile.sha256).where(col(OutputFile.content).is_(None))
                ).all()
            )
        # A store shared with other processes (PostgreSQL) keeps what is younger than an hour:
        # another process may be writing it, or about to commit the row that names it.
        partial, unreferenced = self.outputs.sweep(
            referenced, min_age=SHARED_SWEEP_AGE if self.claims.shared else 0.0
        )
        if partial or unreferenced:
            log.info(
                "output store: removed %d partial downloads and %d unreferenced files",
                partial,
                unreferenced,
            )
        return partial, unreferenced

    def _loop(
        self,
        name: str,
        step: Callable[[], object],
        interval: float,
        again: Callable[[object], bool] | None = None,
    ) -> None:
        """Runs ``step`` every ``interval`` s until stopped; a failed step backs off; a step
        whose result ``again`` accepts (the scanner still behind the chain) runs again at once.

        A database that cannot be reached costs one log line per back-off (1 s doubling to
        30 s), not a traceback per round; the loop goes on by itself when it is back and says
        so once. An unexpected error logs its traceback once, its repeats one line each.
        """
        backoff = Backoff(initial=interval, cap=30.0)
        delay = interval
        failures = 0
        last_unexpected = ""
        while not self._stop.is_set():
            try:
                if self._process_lock is not None:
                    self._process_lock.verify()
                result = step()
                if failures:
                    log.info("%s: working again after %d failed rounds", name, failures)
                backoff.reset()
                delay, failures, last_unexpected = interval, 0, ""
                if again is not None and again(result):
                    delay = 0.0
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
                    delay = backoff.failed()
                else:
                    delay = backoff.failed(floor=1.0)
                    log.warning(
                        "%s: database unavailable (%s); retrying in %.0f s", name, outage, delay
                    )
            except InsufficientFunds as exc:
                log.error("ALERT %s: %s", name, exc)
                delay = backoff.failed(floor=5.0, cap=60.0)
            except BridgeError as exc:
                failures += 1
                log.warning("%s: %s", name, exc)
                delay = backoff.failed()
            except Exception as exc:  # the outermost loop: record and go on
                failures += 1
                delay = backoff.failed()
                seen = f"{type(exc).__name__}: {exc}"
                if seen == last_unexpected:
                    log.error("%s: unexpected error again: %s", name, seen[:300])
                else:
                    log.exception("%s: unexpected error", name)
                last_unexpected = seen
            self._stop.wait(delay)

    def set_dispatch_paused(self, paused: bool) -> None:
        """Pauses (or resumes) the dispatch of new jobs to CE. Stored in the database, so it
        survives restarts and holds for every process on it; a change is logged. Idempotent.

        Raises:
            SQLAlchemyError: the database failed (nothing changed).
        """
        self.pause.set(paused)

    # ------------------------------------------------------------------ operator actions (api)

    def retry_job(self, job_id: int) -> JobState:
        """Makes an open job due at once: clears its failed attempts and backoff.

        Returns:
            The job's state (unchanged: the worker retries its current step).

        Raises:
            JobNotFound: no such job.
            JobConflict: the job is not open (settled or orphaned).
        """
        with self.store.begin() as uow:
            session = uow.session
            job = uow.job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            state = JobState(job.state)
            if not state.is_open:
                raise JobConflict(f"job {job_id} is {state}: there is nothing to retry")
            job.attempts, job.next_attempt_at, job.updated_at = 0, 0.0, utcnow()
            session.add(job)
            uow.commit()
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
            outcome = m.transition(job_view(job), event)
        if isinstance(outcome, m.Rejection):
            raise JobConflict(f"job {job_id} cannot be failed: {outcome.reason}")
        decision = self.ledger.commit_event(job_id, event, state)
        if decision is None:
            raise JobConflict(f"job {job_id} changed state meanwhile; try again")
        return decision

    # ------------------------------------------------------------------ one round of a role

    def scan_once(self) -> ScanReport | None:
        """One scanner round (``Scanner.scan_once``)."""
        return self.scanner.scan_once()

    def scan_target(self, head: int) -> int:
        """The last block the scanner reads at ``head`` (``Scanner.target``)."""
        return self.scanner.target(head)

    def work_once(self) -> int:
        """One worker round (``Worker.work_once``); returns how many steps it started."""
        return self.worker.work_once()

    # ------------------------------------------------------------------ transactions

    def tx_once(self) -> None:
        """One round of the transaction manager, unless this process stands by for its key's
        writer (another process with the same key holds it: the round only tries to take it,
        and the first round that does resumes the key's stored transactions from the
        database), or a reorg the scanner has not handled yet went under the scan cursor: then
        the writes wait for the re-check (a write re-sent before it could land on a job that
        the new chain gave another submission)."""
        if self._process_lock is not None:
            self.writer_active = self._process_lock.held()
            if not self.writer_active:
                return
        if not self.scanner.view_current():
            log.info("the chain changed under the scan cursor: writes wait for the re-scan")
            return
        self.tx.tick()

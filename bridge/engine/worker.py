"""The CE worker: for each open job that is due, the one step the machine names.

``Worker.work_once`` takes the due jobs (longest-waiting first) and, in a thread pool, does for
each the step ``machine.next_step`` decides: fail it before its deadline, create its remote job
(``Idempotency-Key`` makes a repeat return the same one), poll it (and cancel it when the
requester cancelled), or stream and hash its outputs into the file store. Each outcome goes
through ``JobLedger.commit_event`` with the CE calls it came from, joining the store's group
commit (``Store.batch``: the changes of the steps in flight share a transaction; a step returns
once its change is committed). A round's new jobs are marked as sent to CE in one transaction
before any of their job-creates is sent. One job's unexpected error stays its own: logged once
with its id, that job alone backs off. The round also sends the cancel outbox's due rows.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from sqlalchemy import Engine, delete
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bridge.chain.reader import LogReader
from bridge.engine import machine as m
from bridge.engine.codec import request_for
from bridge.engine.core import Core
from bridge.engine.ledger import job_view
from bridge.engine.states import JobState
from bridge.errors import (
    DownloadRefused,
    OutputTooLarge,
    RemoteError,
    RemoteRejected,
    RpcUnavailable,
    SpecError,
)
from bridge.outputs import OutputStore, StoredObject
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, RemoteJobStatus, idempotency_key
from bridge.results import manifest_from_digests, safe_relative_path
from bridge.retry import Backoff
from bridge.store import control
from bridge.store.db import describe_db_error
from bridge.store.models import Job, OutputFile
from bridge.store.uow import CallRecord, UnitOfWork

log = logging.getLogger("bridge.engine")

_WORK_STATES = (
    JobState.NEW,
    JobState.DISPATCHED,
    JobState.RUNNING,
    JobState.CANCELLING,
    JobState.FINISHING,
)

#: Delay before a job's failed step is tried again: 1 s doubling to 60 s (per job).
ATTEMPT_BACKOFF = Backoff(initial=0.5, cap=60.0)

#: Seconds a round waits for its steps. A step still running then (a long download: a huge
#: output, or one served slowly) goes on in the background, its job skipped by the next rounds
#: until it ends, so that one job's step never holds every other job's next step.
ROUND_WAIT = 2.0

#: Bytes of one job's small output files kept in memory for their rows (``output_file.content``,
#: each file up to ``BRIDGE_OUTPUT_INLINE_BYTES``); the job's other files go to the file store.
INLINE_JOB_BYTES = 64 * 1024

#: A step left running by a round: ``("job", job id)`` or ``("cancel", remote_cancel id)``.
_Step = tuple[str, int]


def _by_kind(steps: Iterable[_Step]) -> tuple[list[int], list[int]]:
    """The job ids and the remote_cancel ids of ``steps``, as ``WorkClaims`` takes them."""
    jobs: list[int] = []
    cancels: list[int] = []
    for kind, i in steps:
        (jobs if kind == "job" else cancels).append(i)
    return jobs, cancels


def _mark(uow: UnitOfWork, job: Job, now: float) -> bool:
    """Marks in ``uow`` that a job-create of ``job`` may reach CE from now on (the first
    send's time is kept); False if the job is no longer new, or no longer of ``job``'s
    generation (settled or re-submitted since it was loaded)."""
    fresh = uow.job(job.job_id)
    if fresh is None or fresh.state != JobState.NEW or fresh.generation != job.generation:
        return False
    if fresh.create_sent_at is None:
        fresh.create_sent_at = now
        uow.session.add(fresh)
    return True


def _report(future: Future[None], *, background: bool = False) -> None:
    """Logs a step's unexpected failure (each step contains its job's errors; this is a bug
    or the store failing): one step's failure never stops the others. A step of the round
    that died with a ``BaseException`` (an interpreter exit) passes it on; one of the
    background, whose round is over, is logged."""
    if future.cancelled():
        return  # skipped at shutdown: the job stays due
    try:
        future.result()
    except Exception:
        log.exception("a worker task failed; the round goes on")
    except BaseException:
        if not background:
            raise
        log.exception("a worker task in the background died")


class DispatchPause:
    """The operator's pause of new dispatches: stored (``control``), mirrored in ``event``.

    Stored in the database, so it survives restarts and holds for every process on it; the
    worker reads it each round (``refresh``) and a change is logged once.
    """

    def __init__(self, db: Engine) -> None:
        self._db = db
        self._lock = threading.Lock()
        #: Set while paused (read by the worker each round).
        self.event = threading.Event()

    def set(self, paused: bool) -> None:
        """Pauses (or resumes); stored first. Idempotent.

        Raises:
            SQLAlchemyError: the database failed (nothing changed).
        """
        with self._lock:
            changed = control.set_dispatch_paused(self._db, paused)
            self._mirror(paused)
        if changed:
            log.warning(
                "dispatch of new jobs %s by the operator (stored: it holds across restarts)",
                "paused" if paused else "resumed",
            )

    def refresh(self) -> None:
        """Reads the stored pause: another process on the database may have changed it."""
        with self._lock:
            paused = control.dispatch_paused(self._db)
            changed = paused != self.event.is_set()
            self._mirror(paused)
        if changed:
            log.warning(
                "dispatch of new jobs %s (changed in the database)",
                "paused" if paused else "resumed",
            )

    def _mirror(self, paused: bool) -> None:
        if paused:
            self.event.set()
        else:
            self.event.clear()


class Worker:
    """Works the due jobs on CE (see the module).

    Args:
        core: the shared parts (settings: intervals, limits, the outputs' public URL).
        ce: the CE client.
        reader: the escrow's logs (chain time, settlements above the scan cursor).
        outputs: the file store the outputs are streamed into.
        pause: the dispatch pause.
        cursor: the scanner's last scanned block.
        chain_id: with the contract, names the remote jobs (``Idempotency-Key``).
    """

    def __init__(
        self,
        core: Core,
        *,
        ce: CEClient,
        reader: LogReader,
        outputs: OutputStore,
        pause: DispatchPause,
        cursor: Callable[[], int],
        chain_id: int,
    ) -> None:
        self._core = core
        self._ce, self._reader, self._outputs = ce, reader, outputs
        self._pause, self._cursor = pause, cursor
        self._chain_id = chain_id
        self._contract = core.settings.contract_address
        # Jobs worked at once (``BRIDGE_CE_CONCURRENCY``), each step a thread: the steps wait
        # on CE's answers and on the store's group commit (``Store.batch``) far more than they
        # compute, so more steps in flight mean more CE calls overlapping and larger groups a
        # commit. A job makes ~4 CE calls, so the worker finishes at most
        # concurrency / (4 x CE's answer time) jobs a second (README, "CE calls in flight").
        self._pool = ThreadPoolExecutor(
            max_workers=core.settings.ce_concurrency, thread_name_prefix="ce-work"
        )
        self._head_lock = threading.Lock()
        self._head_cache: tuple[float, set[int]] | None = None  # see _head_settled
        # Steps earlier rounds left running (``ROUND_WAIT``): at most half the pool (all of a
        # pool of one), so that long steps never take every thread. Where claims are leased
        # (PostgreSQL), a thread of its own renews theirs, whatever the rounds do (the loop
        # backs off after a failed round).
        self._background: dict[Future[None], _Step] = {}
        self._background_lock = threading.Lock()
        self._max_background = max(1, core.settings.ce_concurrency // 2)
        self._closed = threading.Event()
        self._leases: threading.Thread | None = None
        if core.claims.shared:
            self._leases = threading.Thread(
                target=self._keep_leases, name="ce-work-leases", daemon=True
            )
            self._leases.start()

    def close(self) -> None:
        """Skips the steps still queued, waits for the running ones (a download stops at its
        next chunk once the CE client is interrupted), then releases their claims."""
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._leases is not None:
            self._leases.join()
        try:
            self._reap()
        except SQLAlchemyError as exc:  # the leases then simply expire
            log.warning("releasing the worker's claims failed: %s", describe_db_error(exc)[0])

    def work_once(self) -> int:
        """Works every open job that is due, but those whose step an earlier round left
        running; returns how many steps it started.

        Returns once they have all ended, or after ``ROUND_WAIT`` s with those still running
        left in the background (while at most half the pool is: beyond that it waits for them
        as long as they take). Their jobs keep their claims, renewed every third of the lease,
        and are released once their steps end.
        """
        self._reap()
        now = self._core.clock()
        chain_now = self._reader.block_timestamp()
        self._pause.refresh()
        states = [s for s in _WORK_STATES if not (s is JobState.NEW and self._pause.event.is_set())]
        claims = self._core.claims
        with self._background_lock:
            busy_jobs, busy_cancels = _by_kind(self._background.values())
        due = claims.claim_jobs(states, now, exclude=busy_jobs)
        cancels = self._core.cancels.due(exclude=busy_cancels)
        steps: dict[Future[None], _Step] = {}
        running: set[Future[None]] | None = None  # what the wait left running, once it returns
        try:
            loaded = self._load(due)
            planned = self._plan_dispatches(loaded, chain_now)
            for job in loaded:
                if self._closed.is_set():
                    break  # stopping: the rest stay due
                work = self._pool.submit(self._work_job, job, chain_now, planned.get(job.job_id))
                steps[work] = ("job", job.job_id)
            for row in cancels:
                if self._closed.is_set():
                    break
                send = self._pool.submit(self._core.cancels.send, row)
                steps[send] = ("cancel", row.id or 0)
            running = self._wait(steps)
        finally:
            # (If the wait raised, the steps still running go to the background all the same.)
            running = {f for f in (steps if running is None else running) if not f.done()}
            left = {steps[f] for f in running}
            with self._background_lock:
                self._background.update((f, steps[f]) for f in running)
            claims.release(
                [j for j in due if ("job", j) not in left],
                [r.id or 0 for r in cancels if ("cancel", r.id or 0) not in left],
            )
        return len(steps)

    def _wait(self, steps: dict[Future[None], _Step]) -> set[Future[None]]:
        """Waits for the round's ``steps``; returns those still running after ``ROUND_WAIT``
        s if the background has room for them (see ``work_once``), else waits on, reaping
        the background as its steps end. Renews the claims of the round's steps still running
        every third of the lease (a long download keeps its job)."""
        pending = set(steps)
        give_up_at = time.monotonic() + ROUND_WAIT
        every = self._core.claims.lease / 3
        renewed = time.monotonic()
        while pending:
            left = give_up_at - time.monotonic()
            watched, timeout = pending, min(every, left)
            if left <= 0:
                self._reap()  # background steps that ended since make room
                with self._background_lock:
                    room = self._max_background - len(self._background)
                    background = set(self._background)
                if len(pending) <= room:
                    return pending
                # No room: woken by the end of a step of the round or of the background.
                watched, timeout = pending | background, every
            done, _ = wait(watched, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done & pending:
                _report(future)
            pending -= done
            if pending and time.monotonic() - renewed >= every:
                renewed = time.monotonic()
                self._renew([steps[f] for f in pending])
        return set()

    def _reap(self) -> None:
        """Releases the claims of the background steps that have ended (their outcome is
        stored by the steps themselves), then logs their failures."""
        with self._background_lock:
            ended = {f: step for f, step in self._background.items() if f.done()}
            for future in ended:
                del self._background[future]
        if not ended:
            return
        try:
            self._core.claims.release(*_by_kind(ended.values()))
        finally:
            for future in ended:
                _report(future, background=True)

    def _keep_leases(self) -> None:
        """Renews the background steps' claims every third of the lease until closed."""
        while not self._closed.wait(self._core.claims.lease / 3):
            with self._background_lock:
                steps = [step for f, step in self._background.items() if not f.done()]
            try:
                self._renew(steps)
            except SQLAlchemyError as exc:  # tried again a third of the lease later
                log.warning("renewing the worker's claims failed: %s", describe_db_error(exc)[0])

    def _renew(self, steps: list[_Step]) -> None:
        """Extends the claims of ``steps`` by a lease from now."""
        if steps:
            self._core.claims.renew(*_by_kind(steps))

    def _load(self, job_ids: list[int]) -> list[Job]:
        """The jobs ``job_ids`` in one query (detached), in that order; gone ones left out.

        A row may be a little older when its step starts than a row loaded by the step itself
        would be: every step re-reads its job under the store's lock before changing it
        (``JobLedger.commit_event``) and changes nothing if the state moved meanwhile.
        """
        if not job_ids:
            return []
        with Session(self._core.store.db) as session:
            rows = session.exec(select(Job).where(col(Job.job_id).in_(job_ids))).all()
            session.expunge_all()
        by_id = {job.job_id: job for job in rows}
        return [by_id[job_id] for job_id in job_ids if job_id in by_id]

    def _plan_dispatches(self, jobs: list[Job], chain_now: int) -> dict[int, CEJobRequest]:
        """The new jobs of the round that are to be sent to CE, marked as sent (see
        ``_mark_create_sent``) in one transaction before any of their job-creates is: job id ->
        its request. From a check that fails here on, the jobs are left to their tasks (which
        meet the same error, contained to each job); so is every job if the transaction
        fails."""
        if self._core.stopping.is_set():
            return {}
        plans: dict[int, CEJobRequest] = {}
        for job in jobs:
            if job.state != JobState.NEW or self._step(job, chain_now).step is not m.Step.DISPATCH:
                continue
            try:
                step, request = self._dispatch_plan(job)
            except Exception:
                # The node failing (the head's settlements), or a bug: the tasks meet it again
                # and report it, each with its job's id; no more waits on it here.
                break
            if step.step is m.Step.DISPATCH and request is not None:
                plans[job.job_id] = request
        if not plans:
            return {}
        try:
            with self._core.store.begin() as uow:
                uow.lock_jobs(plans)
                now = self._core.clock()
                marked = {
                    job.job_id: plans[job.job_id]
                    for job in jobs
                    if job.job_id in plans and _mark(uow, job, now)
                }
                uow.commit()
        except SQLAlchemyError as exc:
            log.warning(
                "marking the round's dispatches failed (each job marks its own): %s",
                describe_db_error(exc)[0],
            )
            return {}
        return marked

    def _step(self, job: Job, chain_now: int) -> m.NextStep:
        return m.next_step(
            job_view(job),
            chain_now=chain_now,
            deadline=job.deadline,
            deadline_margin=self._core.settings.deadline_margin,
        )

    def _work_job(self, job: Job, chain_now: int, planned: CEJobRequest | None = None) -> None:
        """The job's step; ``planned``: its request, already marked as sent to CE
        (``_plan_dispatches``)."""
        if self._core.stopping.is_set():
            return  # stopping: the job stays due and the next start works it
        job_id = job.job_id
        state = JobState(job.state)
        step = self._step(job, chain_now)
        try:
            if step.step is m.Step.FAIL_DEADLINE:
                self._core.ledger.commit_event(job_id, m.DeadlineNear(), state, batched=True)
            elif step.step is m.Step.DISPATCH:
                self._dispatch(job, planned)
            elif step.step is m.Step.FINISH:
                self._finish(job)
            else:
                self._poll(job)
        except RemoteError as exc:
            if self._core.stopping.is_set():
                return  # a call cut short by the shutdown is not a failed attempt
            prefix = "CE refused: " if isinstance(exc, RemoteRejected) else ""
            self._retry_later(job, f"{prefix}{exc}")
        except RpcUnavailable as exc:
            # The node's failure, not CE's: retried, but never counted against the job-create
            # budget (a node outage must not fail jobs on-chain as "CE unavailable").
            self._retry_later(job, str(exc), counted=False)
        except Exception as exc:  # this job's boundary: its unexpected error stays its own
            if self._core.stopping.is_set():
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
        def change(uow: UnitOfWork) -> int | None:
            fresh = uow.job(job.job_id)
            if fresh is None or fresh.state != job.state:
                return None
            if counted:
                fresh.attempts += 1
            fresh.remote_error = message
            fresh.next_attempt_at = self._core.clock() + ATTEMPT_BACKOFF.delay(
                max(fresh.attempts, 1)
            )
            uow.session.add(fresh)
            return fresh.attempts

        attempts = self._core.store.batch(change, job.job_id)
        if attempts is None:
            return
        if not logged:
            log.warning(
                "job %d: attempt %d failed: %s",
                job.job_id,
                attempts,
                message,
                extra={"job_id": job.job_id, "remote_job_id": job.remote_job_id},
            )
        if m.create_exhausted(
            JobState(job.state), attempts, self._core.settings.create_retry_budget, counted=counted
        ):
            self._core.ledger.commit_event(
                job.job_id, m.CreateGaveUp(message), JobState.NEW, batched=True
            )

    def _dispatch_plan(self, job: Job) -> tuple[m.NextStep, CEJobRequest | None]:
        """Whether the new ``job`` may be sent to CE now (``machine.dispatch_step``), and its
        request if its spec converts."""
        request = None
        # Known already for a row scanned before migration 0009 (the scanner then read the
        # spec): its reason stands.
        spec_error = job.spec_error
        if not spec_error:
            # What goes to CE is, field for field, what the requester paid for: the stored
            # encoding hashes to the event's specHash, and is decoded only then (a spec that
            # does not decode, holds text that is not UTF-8, or a storage fault fails the job
            # on-chain with the reason, and refunds it, instead of running another).
            _, request, spec_error = request_for(job.spec_abi, job.spec_hash)
        step = m.dispatch_step(
            spec_error=spec_error,
            rechecking=job.recheck_until is not None,
            settled_at_head=not spec_error
            and job.recheck_until is None
            and self._settled_at_head(job),
        )
        return step, request

    def _dispatch(self, job: Job, planned: CEJobRequest | None = None) -> None:
        """Creates the job's remote job; ``planned``: its request, the job already checked
        and marked as sent (``_plan_dispatches``)."""
        request = planned
        if request is None:
            step, request = self._dispatch_plan(job)
            if step.step is m.Step.SPEC_INVALID:
                self._core.ledger.commit_event(
                    job.job_id, m.SpecInvalid(step.reason), JobState.NEW, batched=True
                )
                return
            if step.step is m.Step.WAIT or request is None:
                self._schedule_poll(job.job_id, JobState.NEW)
                return
            if not self._mark_create_sent(job):
                return  # the job moved on meanwhile
        key = idempotency_key(self._chain_id, self._contract, job.job_id, job.generation)
        try:
            remote_id = self._ce.create_job(request, key)
        except RemoteRejected as exc:
            self._core.ledger.commit_event(
                job.job_id,
                m.CreateRejected(str(exc)),
                JobState.NEW,
                job.generation,
                calls=[("create", False, str(exc))],
                batched=True,
            )
            return
        except RemoteError as exc:
            self._core.store.record_calls(job.job_id, [("create", False, str(exc))])
            raise
        created = m.RemoteCreated(remote_id)
        # The call's record and the remote job id are stored together: one commit, not two.
        call: CallRecord = ("create", True, remote_id)
        if (
            self._core.ledger.commit_event(
                job.job_id, created, JobState.NEW, job.generation, calls=[call], batched=True
            )
            is None
        ):
            # The job moved on while job-create was in flight (cancelled or settled on-chain
            # meanwhile): nobody will follow this remote job, so it must not keep running.
            self._core.cancels.cancel_stray(job.job_id, remote_id)

    def _mark_create_sent(self, job: Job) -> bool:
        """Records, before a job-create of ``job`` is sent, that CE may have a job for it from
        now on (see ``JobLedger.apply``; the first send's time is kept). False if the job is no
        longer new, or no longer of that generation (settled or re-submitted meanwhile: the
        scanner may have stored it after the job was loaded)."""
        return self._core.store.batch(lambda uow: _mark(uow, job, self._core.clock()), job.job_id)

    def _settled_at_head(self, job: Job) -> bool:
        """Whether ``job`` was settled on-chain above the scan cursor: a terminal event of it
        in the blocks above the cursor, read once for every job (``_head_settled``), not with
        a ``getJob`` call per job. (A settlement the scanner stored since the job was loaded
        is seen by ``_mark_create_sent``, which marks only a job still new.)"""
        return job.job_id in self._head_settled()

    def _head_settled(self) -> set[int]:
        """Ids of the jobs with a terminal event above the scan cursor, at most
        ``poll_interval / 4`` (the worker's round) old."""
        with self._head_lock:
            now = time.monotonic()
            if (
                self._head_cache is None
                or now - self._head_cache[0] > self._core.settings.poll_interval / 4
            ):
                # The cursor first: a settlement the scanner stores after this read is at a
                # block above it, so in the logs read next if that block is already mined.
                last = self._cursor()
                head = self._reader.head()
                settled = self._reader.terminal_job_ids(last + 1, head) if head > last else set()
                self._head_cache = (now, settled)
            return self._head_cache[1]

    def _status(self, job: Job, calls: list[CallRecord] | None = None) -> RemoteJobStatus:
        """CE's status of the job's remote job. A changed status is recorded as a call: into
        ``calls`` if given (the caller stores it with the state change), else at once."""
        assert job.remote_job_id is not None
        try:
            status = self._ce.job_status(job.remote_job_id)
        except RemoteError as exc:
            self._core.store.record_calls(job.job_id, [("status", False, str(exc))])
            raise
        if status.status != job.remote_status:
            if calls is None:
                self._core.store.record_calls(job.job_id, [("status", True, status.status)])
            else:
                calls.append(("status", True, status.status))
        return status

    def _poll(self, job: Job) -> None:
        state = JobState(job.state)
        calls: list[CallRecord] = []
        status = self._status(job, calls)
        if m.cancel_while_polling(state, status.status):
            try:
                self._ce.cancel_job(job.remote_job_id or "")
            except RemoteError:
                self._core.store.record_calls(job.job_id, calls)
                raise
            calls.append(("cancel", True, job.remote_job_id))
        seen = m.RemoteStatusSeen(status.status, status.error)
        preview = m.transition(job_view(job), seen)
        if not isinstance(preview, m.Rejection) and preview.actions == (
            m.RemoteAction.DOWNLOAD_OUTPUTS,
        ):
            # CE finished the job: its outputs are fetched first, then the status and the
            # outputs are stored in one commit (a crash before it polls and fetches again; the
            # files are content-addressed). A fetch that fails stores the status alone.
            self._finish(job, status, seen=seen, calls=calls)
            return
        self._commit_seen(job, seen, calls)

    def _schedule_poll(self, job_id: int, state: JobState) -> None:
        def change(uow: UnitOfWork) -> None:
            job = uow.job(job_id)
            if job is not None and job.state == state:
                job.next_attempt_at = self._core.clock() + self._core.settings.poll_interval
                uow.session.add(job)

        self._core.store.batch(change, job_id)

    def _finish(
        self,
        job: Job,
        status: RemoteJobStatus | None = None,
        *,
        seen: m.RemoteStatusSeen | None = None,
        calls: list[CallRecord] | None = None,
    ) -> None:
        """Downloads the outputs into the file store (streamed, hashed as they arrive), then
        stores their rows and queues ``Completed`` in one commit. A listing or a file over the
        job's limits (``max_output_files``, ``max_job_output_bytes``, ``max_output_bytes``
        per file) fails the job with "outputs too large".

        ``seen``: the poll's ``RemoteStatusSeen`` that finishes a job not yet ``FINISHING``
        (with its ``calls``): stored in the same commit as the outputs, or first and alone when
        the download fails (the job then waits in ``FINISHING`` for the next try)."""
        status = status or self._status(job)
        try:
            stored = self._download(status)
        except OutputTooLarge as exc:
            self._outputs_unavailable(job, seen, calls, f"outputs too large: {exc}")
            return
        except (DownloadRefused, SpecError) as exc:
            self._outputs_unavailable(job, seen, calls, str(exc))
            return
        except Exception:
            if seen is not None:
                self._commit_seen(job, seen, calls)
            raise
        digest = hashlib.sha256(
            manifest_from_digests({p: o.sha256 for p, o in stored.items()})
        ).digest()
        uri = f"{self._public_url()}/jobs/{job.job_id}/outputs/"

        def change(uow: UnitOfWork) -> None:
            if seen is not None:
                decision = self._core.ledger.event_change(
                    uow, job.job_id, seen, JobState(job.state), job.generation, calls or [], True
                )
                if decision is None or decision.state is not JobState.FINISHING:
                    return
            session = uow.session
            fresh = uow.job(job.job_id)
            if fresh is None or fresh.state != JobState.FINISHING:
                return
            if fresh.generation != job.generation:
                return
            if fresh.result_hash is not None:
                # Rows of an earlier finish (they are written only with the result hash, in
                # one commit; a reused job id's old rows go with its old row): replaced.
                session.exec(delete(OutputFile).where(col(OutputFile.job_id) == job.job_id))
            for path, obj in stored.items():
                uow.insert(
                    OutputFile,
                    job_id=job.job_id,
                    path=path,
                    sha256=obj.sha256,
                    size=obj.size,
                    content=obj.content,
                )
            self._core.ledger.apply(uow, fresh, m.OutputsHashed(digest, uri))
            detail = f"{len(stored)} files, {sum(o.size for o in stored.values())} bytes"
            uow.record_calls(job.job_id, [("download", True, detail)])

        self._core.store.batch(change, job.job_id)

    def _commit_seen(
        self, job: Job, seen: m.RemoteStatusSeen, calls: list[CallRecord] | None
    ) -> m.Decision | None:
        """Stores the poll's status alone (the job moves to ``FINISHING``)."""
        return self._core.ledger.commit_event(
            job.job_id,
            seen,
            JobState(job.state),
            job.generation,
            calls=calls or [],
            repoll=True,
            batched=True,
        )

    def _outputs_unavailable(
        self,
        job: Job,
        seen: m.RemoteStatusSeen | None,
        calls: list[CallRecord] | None,
        reason: str,
    ) -> None:
        """Fails a finishing job whose outputs cannot be taken (after storing the poll's
        status, if the job was not ``FINISHING`` yet)."""
        if seen is not None:
            decision = self._commit_seen(job, seen, calls)
            if decision is None or decision.state is not JobState.FINISHING:
                return
        self._core.ledger.commit_event(
            job.job_id,
            m.OutputsUnavailable(reason),
            JobState.FINISHING,
            calls=[("download", False, reason)],
            batched=True,
        )

    def _download(self, status: RemoteJobStatus) -> dict[str, StoredObject]:
        """Streams every output file into the file store within the job's limits; a small
        one is kept for its row instead (``StoredObject.content``), up to ``INLINE_JOB_BYTES``
        a job.

        Raises:
            OutputTooLarge: too many files, a file or the total over its limit.
            DownloadRefused, SpecError: a file that must not be fetched or stored.
        """
        settings = self._core.settings
        stored: dict[str, StoredObject] = {}
        if len(status.output_files) > settings.max_output_files:
            raise OutputTooLarge(
                f"{len(status.output_files)} files, over the limit of {settings.max_output_files}"
            )
        total = 0
        inline_left = INLINE_JOB_BYTES
        for output in status.output_files:
            path = safe_relative_path(output.filename)
            if path in stored:
                raise SpecError(f"output file {ascii(path)[:120]} is listed twice")
            left = settings.max_job_output_bytes - total
            cap = min(settings.max_output_bytes, left)
            with self._outputs.partial() as part:
                try:
                    self._ce.download_into(output.url, part, cap)
                except OutputTooLarge as exc:
                    if cap < settings.max_output_bytes:
                        raise OutputTooLarge(
                            f"over the job's limit of {settings.max_job_output_bytes} bytes"
                        ) from exc
                    raise
                obj = stored[path] = part.commit(inline_budget=inline_left)
            total += obj.size
            if obj.content is not None:
                inline_left -= obj.size
        return stored

    def _public_url(self) -> str:
        if self._core.settings.public_url:
            return self._core.settings.public_url.rstrip("/")
        return f"http://{self._core.settings.api_host}:{self._core.settings.api_port}"

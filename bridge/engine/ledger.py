"""Job changes: the machine's decisions applied to stored jobs, one unit of work each.

``JobLedger.commit_event`` is the one way a job changes state: under the store's lock it
reloads the job, checks that it is still in the state (and generation) the I/O was based on,
asks ``machine.transition`` what follows, and stores the new state with the on-chain updates
to queue, the CE calls it came from and any remote job to cancel, in one transaction; the
cancellations are sent after the commit (``CancelOutbox.run_actions``). ``apply`` does the same
inside a unit of work the caller already holds (the scanner's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sqlalchemy import update as sql_update
from sqlmodel import Session, col

from bridge.chain.spec import Status
from bridge.config import Settings
from bridge.engine import machine as m
from bridge.engine.cancels import CancelOutbox
from bridge.engine.codec import request_for, spec_to_json
from bridge.engine.states import JobState
from bridge.remote.convention import idempotency_key
from bridge.store.models import Job, RemoteCancel, Update, utcnow
from bridge.store.uow import CallRecord, Store, UnitOfWork
from bridge.tx.policy import cap_reason

log = logging.getLogger("bridge.engine")

#: ``Update.skip_reason`` of a write the bridge dropped: its job's submission vanished in a reorg.
DROPPED = "dropped: submission removed by a chain reorganisation"


def job_view(job: Job) -> m.JobView:
    """What the machine sees of a stored job."""
    return m.JobView(
        state=JobState(job.state),
        remote_job_id=job.remote_job_id,
        remote_status=job.remote_status,
        cancel_requested=job.cancel_requested,
    )


class JobLedger:
    """Applies the machine's decisions to stored jobs (see the module).

    Args:
        store: the units of work.
        cancels: sends the remote cancellations a decision queued.
        chain_id: with the settings' contract, names the remote jobs (``Idempotency-Key``).
        settings: the contract, and ``poll_interval``: seconds before a job an event left
            where it was is polled again.
        clock: epoch seconds.
    """

    def __init__(
        self,
        store: Store,
        cancels: CancelOutbox,
        *,
        chain_id: int,
        settings: Settings,
        clock: Callable[[], float],
    ) -> None:
        self._store, self._cancels, self._clock = store, cancels, clock
        self._chain_id, self._contract = chain_id, settings.contract_address
        self._poll_interval = settings.poll_interval

    def apply(self, uow: UnitOfWork, job: Job, event: m.Event) -> m.Decision | None:
        """Applies ``event`` to ``job`` inside ``uow`` (the caller commits); None when the
        machine refuses it (nothing changes)."""
        outcome = m.transition(job_view(job), event)
        if isinstance(outcome, m.Rejection):
            log.debug("job %d: %s ignored: %s", job.job_id, type(event).__name__, outcome.reason)
            return None
        previous = job.state
        job.state = outcome.state
        if isinstance(event, m.SpecInvalid):
            job.spec_error = event.message  # the worker found it when it came to send the job
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
        # Due now, behind the jobs waiting longer and the never-attempted ones (at 0): a job
        # just created on CE is polled after the waiting new jobs are sent, not before them.
        job.next_attempt_at = self._clock()
        job.updated_at = utcnow()
        for update in outcome.updates:
            data = update.data
            if update.status in (Status.FAILED, Status.CANCELLED):
                data = cap_reason(data)  # CE's or an operator's text: bounded on-chain
                job.reason = data
            if update.status is Status.COMPLETED:
                job.result_hash = "0x" + update.result_hash.hex()
                job.result_uri = update.data
            uow.insert(
                Update,
                job_id=job.job_id,
                status=int(update.status),
                result_hash="0x" + update.result_hash.hex(),
                data=data,
                held=job.recheck_until is not None,  # its submission is being re-checked
            )
        if (
            previous == JobState.NEW
            and job.state != JobState.NEW
            and job.remote_job_id is None
            and job.create_sent_at is not None
        ):
            # job-create was sent and its answer never stored (a crash, a lost answer, or one
            # still in flight): CE may run a job nobody follows. Find it by its key (the same
            # request sent again), cancel it. A stored spec that is no longer the one paid for
            # is never sent: that remote job, if any, cannot be found.
            spec, request, _ = request_for(job.spec_abi, job.spec_hash)
            uow.insert(
                RemoteCancel,
                job_id=job.job_id,
                remote_job_id="",
                reason=f"job-create may have reached CE before the job became {job.state}",
                idempotency_key=idempotency_key(
                    self._chain_id, self._contract, job.job_id, job.generation
                ),
                request_json=spec_to_json(spec) if spec is not None and request is not None else "",
            )
        if m.RemoteAction.CANCEL_REMOTE in outcome.actions and job.remote_job_id:
            # Queued with the state change: a crash before the call cannot lose it.
            uow.insert(
                RemoteCancel,
                job_id=job.job_id,
                remote_job_id=job.remote_job_id,
                reason=outcome.reason,
            )
        uow.session.add(job)
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

    def commit_event(
        self,
        job_id: int,
        event: m.Event,
        expect: JobState | None = None,
        generation: int | None = None,
        *,
        calls: Iterable[CallRecord] = (),
        repoll: bool = False,
        batched: bool = False,
    ) -> m.Decision | None:
        """Applies ``event`` if the job is still in state ``expect`` (and, if given, still the
        submission of that ``generation``: a reorg may have given its id to another one);
        runs the remote actions once the change is committed.

        ``calls`` (the CE calls the event came from) are recorded in the same transaction,
        whether or not the event applies. With ``repoll``, a job left in ``expect`` (the event
        refused or not moving it) is polled again after ``poll_interval``, in that transaction.
        With ``batched`` the change joins the store's group commit (``Store.batch``: other
        threads' changes share its transaction, each in its own savepoint); the caller must
        not hold the store's lock then.
        """

        def change(uow: UnitOfWork) -> m.Decision | None:
            return self.event_change(uow, job_id, event, expect, generation, calls, repoll)

        if batched:
            decision = self._store.batch(change, job_id)
        else:
            with self._store.begin() as uow:
                decision = change(uow)
                uow.commit()
        if decision is not None and decision.actions:
            self._cancels.run_actions([(job_id, decision)])
        return decision

    def event_change(
        self,
        uow: UnitOfWork,
        job_id: int,
        event: m.Event,
        expect: JobState | None,
        generation: int | None,
        calls: Iterable[CallRecord],
        repoll: bool,
    ) -> m.Decision | None:
        """``commit_event``'s change, added to ``uow`` (the caller commits, then runs the
        decision's remote actions)."""
        uow.record_calls(job_id, calls)
        job = uow.job(job_id)
        if (
            job is None
            or (expect is not None and job.state != expect)
            or (generation is not None and job.generation != generation)
        ):
            return None
        decision = self.apply(uow, job, event)
        if repoll and job.state == expect:
            job.next_attempt_at = self._clock() + self._poll_interval
            uow.session.add(job)
        return decision

    def orphan(self, uow: UnitOfWork, job: Job) -> m.Decision | None:
        """Records that ``job``'s submission is gone (a reorg deeper than the confirmations).

        The machine moves it to ``orphaned`` (queueing the cancellation of a live remote job)
        and every write of it not yet known to be on-chain is dropped, so that none can land
        on a job that gets its id on the new chain. The caller commits.
        """
        decision = self.apply(uow, job, m.SubmissionReorged())
        job.recheck_until = None
        uow.session.add(job)
        uow.session.exec(
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
    def hold_updates(session: Session, job_id: int, *, held: bool) -> None:
        """Holds (or releases) the job's writes not yet on-chain. The caller commits."""
        session.exec(
            sql_update(Update)
            .where(col(Update.job_id) == job_id, col(Update.applied).is_(None))
            .values(held=held)
        )

    def on_update_skipped(self, job_id: int, status: int, error: str) -> None:
        """The writer's report of an update the contract skipped (``TxManager``'s
        ``on_skipped``): a skipped terminal update settles the job."""
        log.warning(
            "job %d: update to status %d skipped on-chain: %s",
            job_id,
            status,
            error,
            extra={"job_id": job_id},
        )
        if status >= int(Status.COMPLETED):
            self.commit_event(job_id, m.TerminalUpdateSkipped(error), JobState.SETTLING)

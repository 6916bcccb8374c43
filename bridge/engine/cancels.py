"""The cancel outbox: remote jobs to cancel on CE, queued with the state change that decided it.

A decision that ends a job's remote work (``RemoteAction.CANCEL_REMOTE``) stores a
``RemoteCancel`` row in the same unit of work as the job's new state; ``CancelOutbox`` sends
it after the commit (``run_actions``) and, when CE does not answer, again on each worker round
once due (``due`` / ``send``, backing off per row) until CE answers. A crash between the commit
and the call cannot leave a remote job running. With several processes on one database, a row
is sent by the process that claimed it (``WorkClaims.claim_cancels``: a lease, released once
sent). A row with no remote job id (a job-create whose
answer was lost) first finds the job by its ``Idempotency-Key``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import KW_ONLY, dataclass

from bridge.engine import machine as m
from bridge.engine.codec import spec_from_json, spec_to_request
from bridge.errors import RemoteAuthError, RemoteError, RemoteRejected, SpecError
from bridge.remote.client import CEClient
from bridge.retry import Backoff
from bridge.store.claims import WorkClaims
from bridge.store.models import RemoteCancel, utcnow
from bridge.store.uow import CallRecord, Store

log = logging.getLogger("bridge.engine")

#: Delay before a failed remote cancel is sent again: 2 s doubling to 5 min.
CANCEL_BACKOFF = Backoff(initial=1.0, cap=300.0)


@dataclass(eq=False, repr=False)
class CancelOutbox:
    """Sends the queued remote cancellations (see the module)."""

    store: Store
    """The units of work."""
    ce: CEClient
    """The CE client."""
    _: KW_ONLY
    clock: Callable[[], float]
    """Epoch seconds."""
    stopping: threading.Event
    """Set when the bridge stops: nothing new is sent."""
    claims: WorkClaims
    """This process's claims on the rows it sends (no-ops on SQLite)."""

    def run_actions(self, actions: Iterable[tuple[int, m.Decision]]) -> None:
        """Sends at once the remote cancellations the decisions queued (the worker retries any
        that fail: see ``due``)."""
        jobs = [j for j, d in actions if m.RemoteAction.CANCEL_REMOTE in d.actions]
        if jobs:
            self.send_all(self.due(jobs))

    def due(
        self, job_ids: list[int] | None = None, exclude: Collection[int] = ()
    ) -> list[RemoteCancel]:
        """Queued remote cancellations not yet answered and due (of ``job_ids``, if given; none
        of the rows ``exclude``), claimed by this process: release them once sent
        (``send_all`` does)."""
        return self.claims.claim_cancels(self.clock(), job_ids, exclude=exclude)

    def send_all(self, rows: list[RemoteCancel]) -> None:
        """Sends claimed ``rows`` one after the other, then releases their claims."""
        try:
            for row in rows:
                self.send(row)
        finally:
            self.claims.release(cancel_ids=[r.id for r in rows if r.id is not None])

    def cancel_stray(self, job_id: int, remote_id: str) -> None:
        """Queues and sends the cancellation of a remote job its job did not take."""
        with self.store.begin() as uow:
            job = uow.job(job_id)
            if job is not None and job.remote_job_id == remote_id:
                return  # it did take it after all
            reason = "remote job created after its job had ended"
            uow.insert(RemoteCancel, job_id=job_id, remote_job_id=remote_id, reason=reason)
            uow.commit()
        log.warning("job %d: %s: cancelling remote job %s", job_id, reason, remote_id)
        self.send_all(self.due([job_id]))

    def send(self, row: RemoteCancel) -> None:
        """Asks CE to cancel one queued remote job; records the answer or schedules a retry."""
        if self.stopping.is_set():
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
            call: CallRecord = ("cancel", error is None, detail)
        else:
            call = ("cancel", False, error)
            log.warning(
                "job %d: remote cancel failed, will retry: %s",
                row.job_id,
                error,
                extra={"job_id": row.job_id, "remote_job_id": row.remote_job_id},
            )
        with self.store.begin() as uow:
            session = uow.session
            uow.record_calls(row.job_id, [call])  # recorded with the outcome: one commit
            fresh = session.get(RemoteCancel, row.id)
            if fresh is None or fresh.done_at is not None:
                uow.commit()
                return
            if row.remote_job_id:
                fresh.remote_job_id = row.remote_job_id  # found by its key
            if done:
                fresh.done_at, fresh.last_error = utcnow(), error
            else:
                fresh.attempts += 1
                fresh.last_error = error
                fresh.next_attempt_at = self.clock() + CANCEL_BACKOFF.delay(fresh.attempts)
            session.add(fresh)
            uow.commit()
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

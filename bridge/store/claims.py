"""Work claims: which process works a job's CE step (create, poll, download, cancel) right now.

Several ``ce-bridge run`` processes may share one PostgreSQL database. Each round, a worker
*claims* the due jobs it will work: in one short transaction it selects them with
``SELECT ... FOR UPDATE SKIP LOCKED`` (rows another worker is claiming at that instant are
skipped, not waited for) among those whose lease is free, its own, or expired, and writes its
lease on them (``lease_holder`` = its operator address, ``lease_expires``). It renews the
leases while a step takes long and clears them when the round ends. The queued remote
cancellations (``remote_cancel``) are claimed the same way.

Guarantees:

- Two live processes never work the same job's step at once, as long as each finishes (or
  renews) within its lease: a claim is granted only on a free, own or expired lease, and the
  claim's select and write are one transaction under row locks.
- A process that dies leaves its leases to expire; the jobs are then claimed by another
  process, which repeats the step. Repeating is safe: ``job-create`` carries the job's
  ``Idempotency-Key`` (CE returns the same remote job), a status poll or a download only
  reads, a cancel of a cancelled job changes nothing; and the state change each step leads to
  is committed under the job's row lock after checking the state it was based on.
- The holder is the operator address, not the process: a process that restarts with its key
  takes its own leases back at once instead of waiting for them to expire. (A process that
  started as the standby of its key's writer holds as ``<address> pid <pid>``: two live
  processes never share a holder.)

- Within one process, a queued cancellation is handed to one claimant at a time: the
  scanner's thread (sending what its decisions queued), a worker step's thread (the same) and
  the worker's round (the due rows) share the process's ``WorkClaims``, which remembers the
  rows it handed out until they are released. (Their lease holder is the same key, so the
  lease alone would let each of them send the row.)

On SQLite (one process per database) a claim is the plain "due jobs" query and leases are
neither written nor read: nothing to share between processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence

from sqlalchemy import ColumnElement, Engine, or_
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, select

from bridge.store.models import Job, RemoteCancel


def is_shared(db: Engine) -> bool:
    """Whether several processes may use ``db`` at once (PostgreSQL), so work is claimed."""
    return db.dialect.name == "postgresql"


class WorkClaims:
    """Claims, renews and releases this process's CE work (see the module).

    Args:
        db: the bridge's database.
        holder: this process's operator address (the lease holder it writes).
        lease: seconds a claim lasts unless renewed.
        clock: epoch seconds.
    """

    def __init__(
        self,
        db: Engine,
        holder: str,
        *,
        lease: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease <= 0:
            raise ValueError("lease must be > 0")
        self.db = db
        self.holder = holder
        self.lease = lease
        self.shared = is_shared(db)
        self._clock = clock
        # The cancellations this process has handed out and not released (see the module).
        self._cancels_held: set[int] = set()
        self._cancels_lock = threading.Lock()

    def claim_jobs(
        self, states: Iterable[str], now: float, limit: int = 256, exclude: Collection[int] = ()
    ) -> list[int]:
        """Ids of the jobs in ``states`` due at ``now`` that this process works this round,
        longest-waiting first (never attempted before polled a moment ago), at most ``limit``,
        none of ``exclude`` (jobs whose step this process still runs: their leases are renewed
        by ``renew`` alone).

        On PostgreSQL each returned job is leased to this process until ``now + lease``.
        """
        query = (
            select(Job.job_id)
            .where(col(Job.state).in_(list(states)), col(Job.next_attempt_at) <= now)
            .order_by(col(Job.next_attempt_at), col(Job.job_id))
            .limit(limit)
        )
        if exclude:
            query = query.where(col(Job.job_id).not_in(list(exclude)))
        with Session(self.db) as session:
            if not self.shared:
                return list(session.exec(query).all())
            query = query.where(self._claimable(Job, now))
            ids = list(session.exec(query.with_for_update(skip_locked=True)).all())
            if ids:
                session.exec(
                    sql_update(Job)
                    .where(col(Job.job_id).in_(ids))
                    .values(lease_holder=self.holder, lease_expires=self._clock() + self.lease)
                )
            session.commit()
            return ids

    def _claimable(self, table: type[Job] | type[RemoteCancel], now: float) -> ColumnElement[bool]:
        """A row's lease is free, this process's own, or expired at ``now``."""
        return or_(
            col(table.lease_holder).is_(None),
            col(table.lease_holder) == self.holder,
            col(table.lease_expires) < now,
        )

    def claim_cancels(
        self,
        now: float,
        job_ids: Sequence[int] | None = None,
        limit: int = 64,
        exclude: Collection[int] = (),
    ) -> list[RemoteCancel]:
        """The queued remote cancellations not yet answered and due (of ``job_ids``, if given;
        none of the rows ``exclude``) that this process sends now, oldest first; on PostgreSQL
        leased as ``claim_jobs``. None of them is handed out again, in this process, until it
        is released (``release``)."""
        with self._cancels_lock:
            rows = self._claim_cancels(now, job_ids, limit, {*exclude, *self._cancels_held})
            self._cancels_held.update(r.id for r in rows if r.id is not None)
        return rows

    def _claim_cancels(
        self, now: float, job_ids: Sequence[int] | None, limit: int, exclude: Collection[int]
    ) -> list[RemoteCancel]:
        query = select(RemoteCancel).where(
            col(RemoteCancel.done_at).is_(None), col(RemoteCancel.next_attempt_at) <= now
        )
        if exclude:
            query = query.where(col(RemoteCancel.id).not_in(list(exclude)))
        if job_ids is not None:
            query = query.where(col(RemoteCancel.job_id).in_(list(job_ids)))
        query = query.order_by(col(RemoteCancel.id)).limit(limit)
        with Session(self.db, expire_on_commit=False) as session:
            if not self.shared:
                return list(session.exec(query).all())
            query = query.where(self._claimable(RemoteCancel, now))
            rows = list(session.exec(query.with_for_update(skip_locked=True)).all())
            expires = self._clock() + self.lease
            for row in rows:
                row.lease_holder, row.lease_expires = self.holder, expires
                session.add(row)
            session.commit()
            return rows

    def renew(self, job_ids: Iterable[int] = (), cancel_ids: Iterable[int] = ()) -> None:
        """Extends this process's leases on ``job_ids`` and ``cancel_ids`` to ``now + lease``
        (a step that takes long keeps its job). Leases lost meanwhile are not taken back."""
        self._set(job_ids, cancel_ids, self._clock() + self.lease)

    def release(self, job_ids: Iterable[int] = (), cancel_ids: Iterable[int] = ()) -> None:
        """Clears this process's leases on ``job_ids`` and ``cancel_ids`` (the round is done:
        any process may take the next step)."""
        self._set(job_ids, cancel_ids, None)

    def _set(
        self, job_ids: Iterable[int], cancel_ids: Iterable[int], expires: float | None
    ) -> None:
        jobs, cancels = list(job_ids), list(cancel_ids)
        if expires is None and cancels:
            with self._cancels_lock:
                self._cancels_held.difference_update(cancels)
        if not self.shared:
            return
        if not jobs and not cancels:
            return
        holder = None if expires is None else self.holder
        with Session(self.db) as session:
            if jobs:
                session.exec(
                    sql_update(Job)
                    .where(col(Job.job_id).in_(jobs), col(Job.lease_holder) == self.holder)
                    .values(lease_holder=holder, lease_expires=expires)
                )
            if cancels:
                session.exec(
                    sql_update(RemoteCancel)
                    .where(
                        col(RemoteCancel.id).in_(cancels),
                        col(RemoteCancel.lease_holder) == self.holder,
                    )
                    .values(lease_holder=holder, lease_expires=expires)
                )
            session.commit()

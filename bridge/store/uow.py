"""The unit of work: one database transaction, under the lock that orders a process's job
changes.

``Store.begin()`` opens one session under the store's lock; what the caller adds to it (a
job's new state, the on-chain updates it queues, the CE calls it came from, a remote job to
cancel) is committed together by ``UnitOfWork.commit()``, or not at all (leaving the block
without a commit rolls back). Every role of the engine (scanner, CE worker, cancel outbox,
admin actions) changes jobs through it, so one process never interleaves two changes of a job,
and no change is ever half stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import Engine
from sqlmodel import Session

from bridge.store.models import Job, RemoteCall

#: A call to CE to record (a ``RemoteCall`` row): kind, whether it succeeded, detail.
CallRecord = tuple[str, bool, str | None]


class UnitOfWork:
    """One open database transaction (``session``) and what it records."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def job(self, job_id: int) -> Job | None:
        """The job's row, locked until this unit of work ends (``FOR UPDATE`` on PostgreSQL,
        where other processes change jobs too: theirs wait, then see this change; on SQLite,
        one process per file, the store's lock orders the changes)."""
        return self.session.get(Job, job_id, with_for_update=True)

    def record_calls(self, job_id: int, calls: Iterable[CallRecord]) -> None:
        """Adds a ``RemoteCall`` row per CE call to this transaction."""
        for kind, ok, detail in calls:
            self.session.add(RemoteCall(job_id=job_id, kind=kind, ok=ok, detail=detail))

    def commit(self) -> None:
        """Commits everything added since the unit of work began."""
        self.session.commit()


class Store:
    """The bridge's database as the engine's roles use it: units of work under one lock.

    Args:
        db: the engine (``bridge.store.db.open_database``).
    """

    def __init__(self, db: Engine) -> None:
        self.db = db
        #: Serialises the changes of jobs in this process (re-entrant: a change may nest).
        self.lock = threading.RLock()

    @contextmanager
    def begin(self, *, locked: bool = True) -> Iterator[UnitOfWork]:
        """A unit of work (under the lock unless ``locked=False``, for rows no other change
        of this process reads first); uncommitted work is rolled back when the block ends."""
        with self.lock if locked else nullcontext(), Session(self.db) as session:
            yield UnitOfWork(session)

    def read(self) -> Session:
        """A session for reads (no lock; loaded rows stay usable after it closes)."""
        return Session(self.db, expire_on_commit=False)

    def record_calls(self, job_id: int, calls: Iterable[CallRecord]) -> None:
        """Stores CE calls that lead to no state change in a transaction of their own (those
        that do are stored with it: ``UnitOfWork.record_calls``)."""
        rows = list(calls)
        if not rows:
            return
        with self.begin(locked=False) as uow:
            uow.record_calls(job_id, rows)
            uow.commit()

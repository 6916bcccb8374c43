"""The unit of work: one database transaction, under the lock that orders a process's job
changes.

``Store.begin()`` opens one session under the store's lock; what the caller adds to it (a
job's new state, the on-chain updates it queues, the CE calls it came from, a remote job to
cancel) is committed together by ``UnitOfWork.commit()``, or not at all (leaving the block
without a commit rolls back). Every role of the engine (scanner, CE worker, cancel outbox,
admin actions) changes jobs through it, so one process never interleaves two changes of a job,
and no change is ever half stored.

Rows that nothing reads back as objects (CE calls, queued on-chain updates, output files,
remote jobs to cancel) are added with ``UnitOfWork.insert``: no ORM object is built for them
(a SQLModel object costs ~100 times a dict) and a table's rows are written with one
``executemany`` when the unit commits, or earlier, before any statement it runs next, so a
query in the same transaction sees them as if they had been flushed.

``Store.batch(change, job_id)`` is the CE worker's way in: a group commit. Changes handed in by
several threads at once are applied in one transaction and committed together (one commit, one
fsync, one wait for the lock, one query loading and locking the group's jobs, one flush, instead
of one each). One change's failure stays its own: if a change raises (or the group's flush
fails), the transaction is rolled back and the group applied again with each change in a
savepoint of its own, so that the failing change alone is lost and its caller gets the
exception while the others commit. Each caller returns only once its change is durable (or
failed), so "stored before it is sent" holds for a change made through it as for one made
through ``begin``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy import Engine, Table, event, insert
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session, SQLModel, col, select

from bridge.store.claims import is_shared
from bridge.store.models import Job, RemoteCall

#: A call to CE to record (a ``RemoteCall`` row): kind, whether it succeeded, detail.
CallRecord = tuple[str, bool, str | None]

T = TypeVar("T")


@cache
def _defaults(model: type[SQLModel]) -> tuple[dict[str, Any], dict[str, Callable[[], Any]]]:
    """The model's field defaults as an INSERT needs them: fixed values, and factories called
    per row (a generated primary key left out, for the database to fill)."""
    fixed: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    table = _table(model)
    for name, info in model.model_fields.items():
        column = table.columns[name]
        if column.primary_key and column.autoincrement in (True, "auto") and info.default is None:
            continue
        if info.default_factory is not None:
            factories[name] = info.default_factory  # type: ignore[assignment]
        elif info.default is not PydanticUndefined:
            fixed[name] = info.default
    return fixed, factories


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


class UnitOfWork:
    """One open database transaction (``session``) and what it records."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._locked: dict[int, Job | None] = {}  # by ``lock_jobs``: None if no such job
        self._rows: dict[Table, list[dict[str, Any]]] = {}  # by ``insert``, not yet written
        event.listen(session, "do_orm_execute", self._before_statement)

    def insert(self, model: type[SQLModel], **values: Any) -> None:
        """Adds a row of ``model``'s table to this transaction, its defaults filled in as the
        model's constructor would, without building the object (see the module). For rows
        the transaction never changes again: no object is returned."""
        fixed, factories = _defaults(model)
        row = {**fixed, **{name: make() for name, make in factories.items()}, **values}
        self._rows.setdefault(_table(model), []).append(row)

    def write_rows(self) -> None:
        """Writes the rows ``insert`` added so far: one statement a table. Before a statement
        of the unit's, they go before the session's pending objects (which the statement's
        autoflush writes next): a table written with ``insert`` has no foreign key to a row
        added as an object (a test checks the tables). ``flush`` writes the objects first."""
        rows, self._rows = self._rows, {}
        for table, batch in rows.items():
            self.session.connection().execute(insert(table), batch)

    def flush(self) -> None:
        """Writes everything added so far, in the transaction: the session's new and changed
        objects, then the rows ``insert`` added (which may name a new job)."""
        self.session.flush()
        self.write_rows()

    def drop_rows(self) -> None:
        """Forgets the rows ``insert`` added and not yet written (their change failed)."""
        self._rows = {}

    def _before_statement(self, _state: ORMExecuteState) -> None:
        if self._rows:
            self.write_rows()

    def job(self, job_id: int) -> Job | None:
        """The job's row, locked until this unit of work ends (``FOR UPDATE`` on PostgreSQL,
        where other processes change jobs too: theirs wait, then see this change; on SQLite,
        one process per file, the store's lock orders the changes)."""
        if job_id in self._locked:  # loaded and locked by ``lock_jobs``: no query
            return self._locked[job_id]
        return self.session.get(Job, job_id, with_for_update=True)

    def lock_jobs(self, job_ids: Iterable[int]) -> None:
        """Loads and locks the rows of ``job_ids`` in one query, in id order (so that two
        transactions locking several jobs wait for each other instead of deadlocking);
        ``job`` then returns them without a query of its own."""
        ids = sorted(set(job_ids) - self._locked.keys())
        if not ids:
            return
        rows = self.session.exec(
            select(Job).where(col(Job.job_id).in_(ids)).order_by(col(Job.job_id)).with_for_update()
        ).all()
        found = {job.job_id: job for job in rows}  # held here: the session's map is weak
        self._locked.update((job_id, found.get(job_id)) for job_id in ids)

    def record_calls(self, job_id: int, calls: Iterable[CallRecord]) -> None:
        """Adds a ``RemoteCall`` row per CE call to this transaction."""
        for kind, ok, detail in calls:
            self.insert(RemoteCall, job_id=job_id, kind=kind, ok=ok, detail=detail)

    def commit(self) -> None:
        """Commits everything added since the unit of work began."""
        self.flush()
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
        self._group = _GroupCommit(self)

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
        that do are stored with it: ``UnitOfWork.record_calls``). On SQLite (one writer per
        file) the transaction queues on the store's lock, as every other write of the process
        does, instead of polling SQLite's busy handler while a group commit holds the file."""
        rows = list(calls)
        if not rows:
            return
        with self.begin(locked=not is_shared(self.db)) as uow:
            uow.record_calls(job_id, rows)
            uow.commit()

    def batch(self, change: Callable[[UnitOfWork], T], job_id: int | None = None) -> T:
        """Applies ``change`` in a transaction shared with the changes other threads hand in
        meanwhile, commits them together, and returns ``change``'s result (see the module).

        ``change`` adds to ``uow.session`` and must not commit; it runs under the store's lock,
        maybe in another thread (the one committing the group), and maybe twice (again when
        another change of its group failed: the first run's changes are rolled back), so it
        must change nothing but the session. ``job_id``: the job it changes (``uow.job``), so
        that the group's jobs are loaded and locked in one query. When this returns, the
        change is committed. If ``change`` raises, only it is lost and the exception is
        raised here; if the commit itself fails, every change of the group is lost and each
        caller gets the error. The caller must not hold the store's lock.
        """
        return self._group.run(change, job_id)


class _Pending(Generic[T]):
    """One change waiting in a group commit, and its outcome once the group committed.

    ``wake`` is held from the start and released once, to wake the thread waiting on it: when
    the change is done, or when that thread is to lead the next group."""

    __slots__ = ("change", "done", "error", "job_id", "value", "wake")

    def __init__(self, change: Callable[[UnitOfWork], T], job_id: int | None) -> None:
        self.change = change
        self.job_id = job_id
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # the change's result, None included


class _GroupCommit:
    """Leader-based group commit: a thread arriving while no group commits leads at once; one
    arriving meanwhile queues its change. When a group is committed its threads are woken (each
    its own, never all waiters: the others sleep on), and the first queued change's thread
    leads the next group, which is everything queued by then."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queue: list[_Pending[object]] = []  # non-empty only while a group commits
        self._leading = False

    def run(self, change: Callable[[UnitOfWork], T], job_id: int | None) -> T:
        item: _Pending[T] = _Pending(change, job_id)
        with self._lock:
            queued = self._leading
            if queued:
                self._queue.append(item)  # type: ignore[arg-type]
            self._leading = True
        if queued:
            item.wake.acquire()  # done by another group, or handed the lead
            if item.done:
                return item.outcome()
            with self._lock:
                group, self._queue = self._queue, []  # this item first among them
        else:
            group = [item]  # type: ignore[list-item]
        try:
            self._commit(group)
        finally:
            for other in group:
                if other is not item:
                    other.wake.release()
            with self._lock:
                if self._queue:
                    self._queue[0].wake.release()  # it leads next; ``_leading`` stays set
                else:
                    self._leading = False
        return item.outcome()

    def _commit(self, group: list[_Pending[object]]) -> None:
        try:
            if not self._attempt(group, contained=False):
                for item in group:
                    item.error = None
                self._attempt(group, contained=True)
        except BaseException as exc:
            for item in group:
                if item.error is None:
                    item.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in group:
                item.done = True

    def _attempt(self, group: list[_Pending[object]], *, contained: bool) -> bool:
        """Applies the group in one transaction and commits it. Not ``contained``: all in one
        flush; returns False (nothing committed) if a change or the flush raised. Contained:
        each change in a savepoint, a failing one rolled back alone (its error kept)."""
        with self._store.begin() as uow:
            session = uow.session
            if session.get_bind().dialect.name == "sqlite":
                # The transaction opened explicitly (pysqlite would open it only at the
                # first write, and a savepoint opened outside a transaction commits when
                # released); IMMEDIATE takes the write lock now, so no read of the group
                # can go stale before its write.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            uow.lock_jobs(item.job_id for item in group if item.job_id is not None)
            for item in group:
                try:
                    if contained:
                        with session.begin_nested():
                            item.value = item.change(uow)
                            uow.flush()
                    else:
                        item.value = item.change(uow)
                except Exception as exc:
                    uow.drop_rows()  # its rows only: the others' were written in theirs
                    item.error = exc
                    if not contained:
                        return False  # rolled back when the block ends
            if not contained:
                try:
                    uow.flush()
                except Exception:
                    return False
            uow.commit()
        return True

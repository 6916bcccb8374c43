"""``Store.batch``: changes of several threads committed together, one's failure its own."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, select

from bridge.engine.states import JobState
from bridge.store.db import open_database
from bridge.store.models import Job, OutputFile, RemoteCall
from bridge.store.uow import Store, UnitOfWork
from bridge.waiting import wait_until
from tests.unit.test_due_jobs import _job

THREADS = 24


def _store(tmp_path: Path) -> Store:
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with Session(db) as session:
        for job_id in range(1, THREADS + 1):
            session.add(_job(job_id, JobState.NEW, 0.0))
        session.commit()
    return Store(db)


def _run_together(store: Store, changes: dict[int, object]) -> dict[int, object]:
    """Hands every change in from its own thread, all released at once; job id -> result
    (or the exception raised)."""
    results: dict[int, object] = {}
    start = threading.Barrier(len(changes))

    def run(job_id: int, change: object) -> None:
        start.wait()
        try:
            results[job_id] = store.batch(change, job_id)  # type: ignore[arg-type]
        except Exception as exc:
            results[job_id] = exc

    threads = [threading.Thread(target=run, args=item) for item in changes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def _commits(db: Engine) -> list[int]:
    counted = [0]
    event.listen(db, "commit", lambda _conn: counted.__setitem__(0, counted[0] + 1))
    return counted


def _running(job_id: int) -> object:
    def change(uow: UnitOfWork) -> str:
        job = uow.job(job_id)
        assert job is not None
        job.state = JobState.RUNNING
        uow.session.add(job)
        uow.record_calls(job_id, [("status", True, f"seen {job_id}")])
        return f"ok {job_id}"

    return change


def test_changes_of_many_threads_share_commits_and_all_land(tmp_path: Path) -> None:
    store = _store(tmp_path)
    commits = _commits(store.db)
    results = _run_together(store, {j: _running(j) for j in range(1, THREADS + 1)})
    assert results == {j: f"ok {j}" for j in range(1, THREADS + 1)}
    assert commits[0] < THREADS  # grouped: fewer commits than changes
    with Session(store.db) as session:
        assert {j.state for j in session.exec(select(Job)).all()} == {JobState.RUNNING}
        assert len(session.exec(select(RemoteCall)).all()) == THREADS


def test_changes_queued_behind_a_group_commit_together_as_the_next_group(
    tmp_path: Path,
) -> None:
    """While a group commits, arriving changes wait (their threads woken only for their own
    outcome or to lead); the first of them then leads one group of everything queued."""
    store = _store(tmp_path)
    commits = _commits(store.db)
    holding, release = threading.Event(), threading.Event()

    def slow(uow: UnitOfWork) -> str:
        holding.set()
        assert release.wait(30)
        return "first"

    results: dict[int, object] = {}

    def run(job_id: int, change: object) -> None:
        results[job_id] = store.batch(change, job_id)  # type: ignore[arg-type]

    first = threading.Thread(target=run, args=(1, slow))
    first.start()
    assert holding.wait(30)
    queued = [threading.Thread(target=run, args=(j, _running(j))) for j in range(2, THREADS + 1)]
    for thread in queued:
        thread.start()
    wait_until(lambda: len(store._group._queue) == THREADS - 1, 30, 0.01, "all queued")
    before = commits[0]
    release.set()
    for thread in [first, *queued]:
        thread.join(30)
    assert results == {1: "first", **{j: f"ok {j}" for j in range(2, THREADS + 1)}}
    assert commits[0] - before == 2  # the held group, then one group of every queued change
    assert not store._group._leading and not store._group._queue


def test_a_change_that_raises_loses_only_its_own_work(tmp_path: Path) -> None:
    store = _store(tmp_path)
    bad_python, bad_flush, bad_rows = 5, 9, 13

    def raises(uow: UnitOfWork) -> None:
        _running(bad_python)(uow)  # type: ignore[operator]
        raise RuntimeError("a bug in this job's step")

    def fails_at_flush(uow: UnitOfWork) -> None:
        _running(bad_flush)(uow)  # type: ignore[operator]
        for _ in range(2):  # the same path twice: the unique constraint fails at the flush
            uow.session.add(OutputFile(job_id=bad_flush, path="out.txt", sha256="a" * 64, size=1))

    def fails_writing_rows(uow: UnitOfWork) -> None:
        _running(bad_rows)(uow)  # type: ignore[operator]
        for _ in range(2):  # rows without objects (``insert``): fail when written
            uow.insert(OutputFile, job_id=bad_rows, path="out.txt", sha256="a" * 64, size=1)

    changes: dict[int, object] = {j: _running(j) for j in range(1, THREADS + 1)}
    changes[bad_python], changes[bad_flush] = raises, fails_at_flush
    changes[bad_rows] = fails_writing_rows
    results = _run_together(store, changes)
    assert isinstance(results.pop(bad_python), RuntimeError)
    assert isinstance(results.pop(bad_flush), Exception)
    assert isinstance(results.pop(bad_rows), Exception)
    assert results == {j: f"ok {j}" for j in changes if j not in (bad_python, bad_flush, bad_rows)}
    with Session(store.db) as session:
        states = {j.job_id: j.state for j in session.exec(select(Job)).all()}
        calls = {c.job_id for c in session.exec(select(RemoteCall)).all()}
        files = session.exec(select(OutputFile)).all()
    assert states[bad_python] == states[bad_flush] == states[bad_rows] == JobState.NEW
    assert {j for j, s in states.items() if s == JobState.RUNNING} == set(results)
    assert calls == set(results) and files == []


class _WatchedLock:
    """The store's lock, reporting when ``watched`` (a thread) starts waiting for it."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.watched: threading.Thread | None = None
        self.waiting = threading.Event()

    def __enter__(self) -> bool:
        if threading.current_thread() is self.watched:
            self.waiting.set()
        return bool(self._lock.acquire())

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_calls_stored_alone_queue_on_the_store_lock_on_sqlite(tmp_path: Path) -> None:
    """``Store.record_calls`` (a failed CE call, no state change) writes under the store's lock
    on SQLite: while another thread holds it (as a group commit does), the write waits for it
    instead of polling SQLite's busy handler, then lands."""
    store = _store(tmp_path)
    watched = _WatchedLock(store.lock)
    store.lock = watched  # type: ignore[assignment]
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def holder() -> None:
        with watched:
            held.set()
            release.wait(30)

    def recorder() -> None:
        store.record_calls(1, [("create", False, "CE unavailable")])
        done.set()

    hold = threading.Thread(target=holder)
    hold.start()
    assert held.wait(30)
    record = threading.Thread(target=recorder)
    watched.watched = record
    record.start()
    assert watched.waiting.wait(30), "record_calls wrote without the store's lock"
    assert not done.is_set()  # it waits for the holder
    release.set()
    assert done.wait(30)
    hold.join(30)
    record.join(30)
    with Session(store.db) as session:
        rows = session.exec(select(RemoteCall)).all()
    assert [(r.job_id, r.kind, r.ok, r.detail) for r in rows] == [
        (1, "create", False, "CE unavailable")
    ]

"""The store's scale-out parts on a real PostgreSQL (and their SQLite degradations): work claims
with ``FOR UPDATE SKIP LOCKED`` and leases, the scanner's leadership, migrations of processes
starting together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session, col, select

from bridge.engine.states import JobState
from bridge.store.claims import WorkClaims
from bridge.store.db import open_database
from bridge.store.locks import (
    AdvisoryLeader,
    SoleLeader,
    acquire_leadership,
    acquire_process_lock,
    advisory_key,
    advisory_lock_held,
    operator_key,
)
from bridge.store.models import Job, RemoteCancel
from tests.builders import Clock, stored_job
from tests.faults.harness import wait_for
from tests.pg import pg_admin, postgres_database

A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
OPEN = [JobState.NEW, JobState.DISPATCHED]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_database("ce_bridge_i12scale") as url:
        open_database(url).dispose()
        yield url


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = open_database(pg_url)
    with Session(engine) as session:
        session.exec(text("TRUNCATE job, remote_cancel"))  # type: ignore[call-overload]
        session.commit()
    yield engine
    engine.dispose()


def add_jobs(db: Engine, ids: range, **columns: object) -> None:
    with Session(db) as session:
        for job_id in ids:
            session.add(stored_job(job_id, **columns))
        session.commit()


def leases(db: Engine) -> dict[int, str | None]:
    with Session(db) as session:
        rows = session.exec(select(Job.job_id, Job.lease_holder).order_by(col(Job.job_id))).all()
        return {int(j): h for j, h in rows}


def test_two_workers_claim_disjoint_jobs_and_a_dead_ones_jobs_after_its_lease(pg: Engine) -> None:
    clock = Clock()
    a = WorkClaims(pg, A, lease=10, clock=clock)
    b = WorkClaims(pg, B, lease=10, clock=clock)
    add_jobs(pg, range(1, 7))
    mine = a.claim_jobs(OPEN, clock.now, limit=4)
    assert mine == [1, 2, 3, 4]
    assert b.claim_jobs(OPEN, clock.now) == [5, 6]  # leased jobs are not offered to b
    assert b.claim_jobs(OPEN, clock.now) == [5, 6]  # its own lease: taken back (a restart)
    assert a.claim_jobs(OPEN, clock.now) == [1, 2, 3, 4]
    # a renews while it works; b cannot take them before the renewed lease ends.
    clock.now += 8
    a.renew(mine)
    clock.now += 8
    assert b.claim_jobs(OPEN, clock.now) == [5, 6]
    # a dies: after its lease, b takes its jobs.
    clock.now += 3
    assert b.claim_jobs(OPEN, clock.now) == [1, 2, 3, 4, 5, 6]
    assert set(leases(pg).values()) == {B}
    # a renewal by a process that lost its lease takes nothing back.
    a.renew(mine)
    assert set(leases(pg).values()) == {B}
    b.release(range(1, 7))
    assert set(leases(pg).values()) == {None}
    assert a.claim_jobs(OPEN, clock.now) == [1, 2, 3, 4, 5, 6]


def test_a_claim_skips_rows_another_worker_is_claiming_instead_of_waiting(
    pg: Engine, pg_url: str
) -> None:
    add_jobs(pg, range(1, 4))
    # A claim that waited for the row lock instead of skipping it would wait forever (the lock
    # is held by this thread): PostgreSQL's lock_timeout turns such a wait into an error.
    impatient = create_engine(pg_url, connect_args={"options": "-c lock_timeout=5000"})
    try:
        b = WorkClaims(impatient, B, lease=10)
        with Session(pg) as other:
            # Another worker's claim transaction, in flight: it holds job 1's row lock.
            other.exec(select(Job).where(col(Job.job_id) == 1).with_for_update())
            assert b.claim_jobs(OPEN, time.time()) == [2, 3]
            other.rollback()
        assert b.claim_jobs(OPEN, time.time()) == [1, 2, 3]
    finally:
        impatient.dispose()


def test_only_due_jobs_in_the_given_states_are_claimed(pg: Engine) -> None:
    add_jobs(pg, range(1, 3))
    add_jobs(pg, range(3, 4), state=JobState.SETTLED)
    add_jobs(pg, range(4, 5), next_attempt_at=5_000.0)
    claims = WorkClaims(pg, A, lease=10, clock=Clock())
    assert claims.claim_jobs(OPEN, 1_000.0) == [1, 2]
    assert claims.claim_jobs(OPEN, 6_000.0) == [1, 2, 4]


def test_remote_cancels_are_claimed_like_jobs(pg: Engine) -> None:
    clock = Clock()
    with Session(pg) as session:
        for job_id in (1, 2):
            session.add(RemoteCancel(job_id=job_id, remote_job_id=f"r{job_id}", reason="test"))
        session.add(
            RemoteCancel(
                job_id=3, remote_job_id="r3", reason="done", done_at=None, next_attempt_at=9_999.0
            )
        )
        session.commit()
    a = WorkClaims(pg, A, lease=10, clock=clock)
    b = WorkClaims(pg, B, lease=10, clock=clock)
    mine = a.claim_cancels(clock.now)
    assert [r.remote_job_id for r in mine] == ["r1", "r2"]
    assert b.claim_cancels(clock.now) == []
    clock.now += 11  # a's lease ran out
    taken = b.claim_cancels(clock.now)
    assert [r.remote_job_id for r in taken] == ["r1", "r2"]
    # a's round ends late: it releases its claims (no row changes: b holds them now).
    a.release(cancel_ids=[r.id for r in mine if r.id is not None])
    assert a.claim_cancels(clock.now, job_ids=[2]) == []  # b holds it now
    b.release(cancel_ids=[r.id for r in taken if r.id is not None])
    assert [r.remote_job_id for r in a.claim_cancels(clock.now, job_ids=[2])] == ["r2"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_cancel_claimed_in_this_process_is_not_claimed_again_until_released(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The scanner's thread sends the cancels its decisions queued while the worker's round
    claims the due ones, with the process's one ``WorkClaims``: a row one of them holds is
    not handed to the other (its lease holder is the same key, so the lease alone would let
    both send it) until it is released."""
    db: Engine = (
        open_database(f"sqlite:///{tmp_path / 'bridge.db'}")
        if backend == "sqlite"
        else request.getfixturevalue("pg")
    )
    try:
        with Session(db) as session:
            for job_id in range(1, 41):
                session.add(RemoteCancel(job_id=job_id, remote_job_id=f"r{job_id}", reason="t"))
            session.commit()
        claims = WorkClaims(db, A, lease=10)
        now = time.time()
        got: list[list[int]] = []

        def claim() -> None:
            for _ in range(5):
                got.append([r.id or 0 for r in claims.claim_cancels(now, limit=8)])

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        claimed = [i for batch in got for i in batch]
        assert len(claimed) == len(set(claimed)) == 40, "a row was handed out twice"
        assert claims.claim_cancels(now) == []
        claims.release(cancel_ids=claimed[:3])
        assert sorted(r.id or 0 for r in claims.claim_cancels(now)) == sorted(claimed[:3])
    finally:
        if backend == "sqlite":
            db.dispose()


def test_on_sqlite_a_claim_is_the_due_query_and_writes_no_lease(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        add_jobs(db, range(1, 4))
        a = WorkClaims(db, A, lease=10)
        b = WorkClaims(db, B, lease=10)
        assert not a.shared
        assert a.claim_jobs(OPEN, time.time()) == [1, 2, 3]
        assert b.claim_jobs(OPEN, time.time()) == [1, 2, 3]  # one process: nothing to share
        a.renew([1])
        a.release([1])
        assert set(leases(db).values()) == {None}
        assert isinstance(
            acquire_leadership(f"sqlite:///{tmp_path / 'bridge.db'}", "x"), SoleLeader
        )
    finally:
        db.dispose()


def test_one_leader_at_a_time_and_a_standby_takes_over_when_it_goes(pg_url: str) -> None:
    label = "scanner:31337:0xtest"
    one = acquire_leadership(pg_url, label)
    two = acquire_leadership(pg_url, label)
    assert isinstance(one, AdvisoryLeader) and isinstance(two, AdvisoryLeader)
    try:
        assert one.held()
        assert not two.held()
        assert one.held()  # still held (its connection is checked)
        one.release()
        assert two.held()
        assert not one.held()  # a released leader stands by like any other
    finally:
        one.release()
        two.release()


def test_a_sigkilled_leader_loses_the_lead_at_once(pg_url: str, tmp_path: Path) -> None:
    label = "scanner:31337:0xkill"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from bridge.store.locks import acquire_leadership\n"
            f"lead = acquire_leadership({pg_url!r}, {label!r})\n"
            "assert lead.held()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    standby = acquire_leadership(pg_url, label)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        assert not standby.held()
        engine = create_engine(pg_url)
        with engine.connect() as conn:
            assert advisory_lock_held(conn, advisory_key(label))
            query = (
                "SELECT application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database() AND application_name LIKE 'ce-bridge %'"
            )
            who = conn.execute(text(query)).scalars().all()
        engine.dispose()
        assert f"ce-bridge scanner pid {holder.pid}" in who
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        took = wait_for(standby.held, 10, "the standby to take the lead", interval=0.05)
        print(f"leadership taken over {took:.2f} s after the SIGKILL")
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(10)
        standby.release()


def test_advisory_lock_held_reads_pg_locks_without_taking(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert not advisory_lock_held(conn, operator_key(A))
            lock = acquire_process_lock(pg_url, A)
            try:
                assert advisory_lock_held(conn, operator_key(A))
                assert not advisory_lock_held(conn, operator_key(B))
            finally:
                lock.release()
            assert not advisory_lock_held(conn, operator_key(A))
    finally:
        engine.dispose()


def test_processes_starting_together_migrate_one_after_the_other() -> None:
    with postgres_database("ce_bridge_i12scale") as url:
        errors: list[BaseException] = []

        def start() -> None:
            try:
                open_database(url).dispose()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        name = url.rsplit("/", 1)[1]
        assert pg_admin("SELECT 1 FROM pg_database WHERE datname = :n", n=name) == [(1,)]

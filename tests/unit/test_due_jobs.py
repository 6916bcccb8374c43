"""Which jobs a worker round takes: longest-waiting first, so none starves."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from bridge.engine.states import JobState
from bridge.store.claims import WorkClaims
from bridge.store.db import open_database
from bridge.store.models import Job


def _job(job_id: int, state: JobState, next_attempt_at: float) -> Job:
    return Job(
        job_id=job_id,
        requester="0x" + "11" * 20,
        spec_abi=b"",
        spec_hash="0x" + "00" * 32,
        payment_wei="1",
        deadline=10**10,
        block_number=1,
        block_hash="0x" + "00" * 32,
        tx_hash="0x" + "00" * 32,
        log_index=0,
        state=state,
        next_attempt_at=next_attempt_at,
    )


def test_new_jobs_are_not_starved_by_many_open_ones(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with Session(db) as session:
        # 300 running jobs polled at t=100..399 (due again), then a new job with a higher id.
        for i in range(300):
            session.add(_job(i + 1, JobState.RUNNING, 100.0 + i))
        session.add(_job(1000, JobState.NEW, 0.0))
        session.add(_job(1001, JobState.SETTLED, 0.0))
        session.add(_job(1002, JobState.NEW, 10_000.0))  # backing off: not due yet
        session.commit()
    states = [JobState.NEW, JobState.RUNNING]
    due = WorkClaims(db, "0x" + "22" * 20, lease=60.0).claim_jobs(states, now=1000.0, limit=256)
    assert due[0] == 1000, "the never-attempted job goes first"
    assert len(due) == 256
    assert due[1:] == list(range(1, 256)), "then the longest-waiting open jobs"
    assert 1001 not in due and 1002 not in due

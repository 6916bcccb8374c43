"""CE faults: the emulator answers 30% of calls with 5xx, and more with 429 (``Retry-After``),
hangs past the client's timeout, or malformed bodies.

- Every job converges, with exactly one remote job per on-chain job (a hang or a malformed answer
  after the job was created makes the bridge re-send ``job-create``: the key returns the same job).
- A job whose ``job-create`` keeps failing (its app in the emulator's ``error_apps``: 503 every
  time) is failed on-chain once ``BRIDGE_CREATE_RETRY_BUDGET`` rounds are spent, with the reason,
  and the requester is refunded.
- A remote job that never finishes is failed ``BRIDGE_DEADLINE_MARGIN`` before the on-chain
  deadline (Anvil's clock is moved forward), so the requester is refunded without anyone calling
  ``reclaimExpired``, and the remote job is cancelled.
"""

from __future__ import annotations

import random
from pathlib import Path

from sqlmodel import Session
from web3.types import RPCEndpoint

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.remote.convention import CEStatus
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import Job
from tests.faults.harness import (
    OUTAGE_APP,
    RunStart,
    Workload,
    audit,
    emulator_job,
    emulator_stats,
    fault_seed,
    job_key,
    mixed_emulator,
    mixed_kinds,
    wait_for,
    writes_settled,
)

JOBS = 60
RETRY_BUDGET = 3
MARGIN = 300


def _failed_reason(stack: LocalStack, job_id: int) -> str:
    (entry,) = stack.escrow.events.JobFailed().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )
    return str(entry["args"]["reason"])


def test_jobs_converge_through_ce_faults(tmp_path: Path, fault_db_url: str) -> None:
    seed = fault_seed("ce-faults")
    rng = random.Random(seed)
    db_url = fault_db_url
    config = mixed_emulator(
        error_apps=frozenset({OUTAGE_APP}),
        error_rate=0.3,
        rate_limit_rate=0.1,
        retry_after=0.2,
        timeout_rate=0.05,
        timeout_seconds=2.0,
        malformed_rate=0.05,
        seed=seed,
    )
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        database_url=db_url,
        emulator_config=config,
        settings={
            "ce_timeout": 1.0,
            "create_retry_budget": RETRY_BUDGET,
            "deadline_margin": MARGIN,
        },
    ) as stack:
        start = RunStart.of(stack)
        work = Workload(stack)
        work.submit([*mixed_kinds(JOBS, rng), "outage"])
        converge = work.converge()

        # The job CE never accepted: failed with the reason, refunded (checked by the audit).
        (outage,) = [j for j in work.jobs if j.kind == "outage"]
        reason = _failed_reason(stack, outage.job_id)
        assert reason.startswith("CE unavailable, job not created"), reason
        tried = emulator_stats(stack)["by_key"][job_key(stack, outage.job_id)]
        assert tried["jobs"] == 0 and tried["calls"] >= RETRY_BUDGET, tried

        # A remote job that never finishes: failed before the deadline, without reclaimExpired.
        (never,) = work.submit(["never"])
        wait_for(
            lambda: work.status(never.job_id) >= Status.ACCEPTED, 120, "the job to be accepted"
        )
        deadline = int(stack.escrow.functions.getJob(never.job_id).call()[3])
        now = int(stack.w3.eth.get_block("latest")["timestamp"])
        jump = deadline - MARGIN + 5 - now
        stack.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [jump])
        stack.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
        wait_for(lambda: work.status(never.job_id).is_terminal, 60, "the deadline failure")
        failed_at = int(stack.w3.eth.get_block("latest")["timestamp"])
        assert work.status(never.job_id) is Status.FAILED
        assert _failed_reason(stack, never.job_id) == (
            "deadline reached before the remote job finished"
        )
        assert failed_at <= deadline
        assert not stack.escrow.events.JobExpired().get_logs(from_block=start.block)
        assert stack.bridge is not None
        with Session(stack.bridge.db) as session:
            row = session.get(Job, never.job_id)
            assert row is not None and row.remote_job_id
            remote_id = row.remote_job_id
        wait_for(
            lambda: emulator_job(stack, remote_id)["status"] == CEStatus.ABORTED,
            60,
            "the remote job to be cancelled",
        )
        wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
        stack.stop_bridge()

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        stats = emulator_stats(stack)
        print(
            f"ce-faults: seed {seed}; converged in {converge:.0f} s; outage job tried "
            f"{tried['calls']} times then failed; deadline failure {deadline - failed_at} s "
            f"before the deadline; {stats['create_calls']} job-create calls for "
            f"{stats['jobs']} remote jobs"
        )
        print(f"ce-faults: {report.line()}")


def test_a_remote_job_created_after_its_job_was_cancelled_is_cancelled(tmp_path: Path) -> None:
    # CE takes 3 s to answer anything: the requester cancels the job on-chain (refunded at once)
    # while the bridge's job-create is still in flight. The remote job that call creates belongs
    # to a job that has ended: it must be cancelled, not left running.
    config = EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=30.0,
        timeout_rate=1.0,
        timeout_seconds=3.0,
    )
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        emulator_config=config,
        settings={"ce_timeout": 10.0},
    ) as stack:
        assert stack.bridge is not None
        bridge = stack.bridge
        work = Workload(stack)
        (job,) = work.submit(["ok"])

        def picked_up() -> bool:
            with Session(bridge.db) as session:
                return session.get(Job, job.job_id) is not None

        wait_for(picked_up, 30, "the bridge to pick the job up", interval=0.02)
        tx = stack.escrow.functions.cancelJob(job.job_id).transact({"from": job.requester})
        stack.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        assert work.status(job.job_id) is Status.CANCELLED

        def remote_ids() -> list[str]:
            entry = emulator_stats(stack)["by_key"].get(job_key(stack, job.job_id), {})
            return list(entry.get("remoteJobIds", []))

        wait_for(lambda: bool(remote_ids()), 30, "job-create to be processed")
        (remote_id,) = remote_ids()
        wait_for(
            lambda: emulator_job(stack, remote_id)["status"] == CEStatus.ABORTED,
            60,
            "the stray remote job to be cancelled",
        )

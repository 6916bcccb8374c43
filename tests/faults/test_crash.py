"""Crashes: 200 mixed jobs while ``ce-bridge run`` is SIGKILLed at random moments, 15+ times.

The bridge runs as a real subprocess (``BRIDGE_*`` from a ``LocalStack(start_bridge=False)``:
its Anvil with 0.5 s blocks, its CE emulator, its contract, a SQLite file) and is killed with
SIGKILL after a random uptime drawn from a seeded RNG, then restarted at once. Jobs are
submitted in waves between kills, so kills land in every phase: startup, scanning, job-create,
polling, downloads, batching, broadcasting. At the end ``harness.audit`` checks every guarantee
(terminal states, exactly one remote job per on-chain job, no payout doubled, balance invariant,
no nonce gap) and the test prints what it measured. Replay a failure with the printed
``CE_FAULT_SEED``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlmodel import Session

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, CEStatus
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import Job
from tests.faults.harness import (
    BridgeProcess,
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

JOBS = 200
WAVES = 10
MIN_KILLS = 15
UPTIME = (0.3, 4.0)  # seconds the bridge runs before each kill, drawn at random


@pytest.mark.parametrize("fault_db_url", ["sqlite", "postgresql"], indirect=True)
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, fault_db_url: str
) -> None:
    seed = fault_seed("crash")
    rng = random.Random(seed)
    db_url = fault_db_url
    config = mixed_emulator()
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        database_url=db_url,
        emulator_config=config,
        start_bridge=False,
        settings={"batch_size": 50, "tx_stuck_after": 10.0},
    ) as stack:
        start = RunStart.of(stack)
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        work = Workload(stack)
        kinds = mixed_kinds(JOBS, rng)
        waves = [kinds[i::WAVES] for i in range(WAVES)]
        uptimes: list[float] = []
        started = time.monotonic()
        try:
            bridge.start()
            while waves or len(uptimes) < MIN_KILLS:
                if waves:
                    work.submit(waves.pop(0))
                uptime = rng.uniform(*UPTIME)
                up_since = time.monotonic()
                while time.monotonic() - up_since < uptime:
                    work.send_due_cancellations()
                    time.sleep(0.05)
                bridge.kill()
                uptimes.append(round(uptime, 2))
                bridge.start()
            killing_took = time.monotonic() - started
            converge = work.converge()
            wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
        except BaseException:
            print(bridge.tail())
            raise
        finally:
            bridge.close()

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        print(
            f"crash: seed {seed}; {len(uptimes)} SIGKILLs after uptimes {uptimes} s "
            f"({killing_took:.0f} s), then converged in {converge:.0f} s"
        )
        print(f"crash: {report.line()}")
        assert len(uptimes) >= MIN_KILLS
        assert report.jobs == JOBS


class Crash(BaseException):
    """Stands for the process dying."""


class CrashAfterCreate(CEClient):
    """A client whose process dies once CE has made the job, before its answer is stored."""

    def create_job(self, req: CEJobRequest, idempotency_key: str) -> str:
        super().create_job(req, idempotency_key)
        raise Crash("killed between job-create and storing its answer")


def test_a_job_cancelled_while_its_create_answer_was_lost_leaves_no_remote_job(
    tmp_path: Path,
) -> None:
    # The bridge dies right after CE made the remote job; before it is back, the requester
    # cancels the job (refunded at once). The restarted bridge never got the remote job's id,
    # yet the remote job must not run on: it is found by its Idempotency-Key and cancelled.
    config = EmulatorConfig(provisioning_seconds=0.1, downloading_seconds=0.1, running_seconds=60)
    with LocalStack(
        tmp_path, block_time=0.5, confirmations=1, emulator_config=config, start_bridge=False
    ) as stack:
        first = Bridge.from_settings(stack.settings)
        crashing = Bridge(
            stack.settings,
            db=first.db,
            w3=first.w3,
            ce=CrashAfterCreate(
                stack.settings.ce_url, stack.settings.ce_authenticator.get_secret_value()
            ),
            tx=first.tx,
            reader=first.reader,
            escrow=first.escrow,
            chain_id=first.chain_id,
        )
        work = Workload(stack)
        (job,) = work.submit(["ok"])

        def stored() -> bool:
            crashing.scan_once()
            with Session(crashing.db) as session:
                return session.get(Job, job.job_id) is not None

        wait_for(stored, 30, "the job to be stored")
        with pytest.raises(Crash):
            crashing.work_once()
        crashing.stop()
        first.stop()
        (remote_id,) = emulator_stats(stack)["by_key"][job_key(stack, job.job_id)]["remoteJobIds"]

        tx = stack.escrow.functions.cancelJob(job.job_id).transact({"from": job.requester})
        stack.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        assert work.status(job.job_id) is Status.CANCELLED
        stack.start_bridge()
        wait_for(
            lambda: emulator_job(stack, remote_id)["status"] == CEStatus.ABORTED,
            60,
            "the remote job nobody heard of to be cancelled",
        )
        entry = emulator_stats(stack)["by_key"][job_key(stack, job.job_id)]
        assert entry["jobs"] == 1  # found by its key, not made twice

"""RPC faults: 100 mixed jobs with the bridge's node behind a proxy that faults 20% of requests.

The proxy (``tests/faults/rpc_proxy.py``) drops responses after forwarding (so a transaction
reaches the node while the bridge hears nothing), resets connections, delays answers, answers
502/503, and reports a block number that lags the head or goes back. The test's own traffic goes
to Anvil directly. Every job must converge with no duplicate remote job and no write applied
twice (the audit counts and prints the expected ``UpdateSkipped`` items).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from sqlmodel import Session

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.store.models import Job
from tests.faults.harness import (
    RunStart,
    Submitted,
    Workload,
    audit,
    fault_seed,
    mixed_emulator,
    mixed_kinds,
    wait_for,
    writes_settled,
)
from tests.faults.rpc_proxy import RpcFaultProxy

JOBS = 100
FAULT_RATE = 0.2


def test_jobs_converge_through_a_faulty_rpc_node(tmp_path: Path, fault_db_url: str) -> None:
    seed = fault_seed("rpc-faults")
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
        settings={"tx_stuck_after": 10.0},
    ) as stack:
        assert stack.anvil is not None
        with RpcFaultProxy(stack.anvil.url, seed=seed, delay=0.8) as proxy:
            stack.settings = stack.settings.model_copy(update={"rpc_url": proxy.url})
            start = RunStart.of(stack)
            stack.start_bridge()
            proxy.rate = FAULT_RATE
            work = Workload(stack)
            kinds = mixed_kinds(JOBS, rng)
            pickup: list[float] = []
            for wave in (kinds[:25], kinds[25:50], kinds[50:75], kinds[75:]):
                submitted = work.submit(wave)

                def picked_up(batch: list[Submitted] = submitted) -> bool:
                    return all(work.status(j.job_id) != Status.SUBMITTED for j in batch)

                took = wait_for(
                    picked_up,
                    120,
                    "the wave to be picked up",
                    interval=0.25,
                    between=work.send_due_cancellations,
                )
                pickup.append(round(took, 1))
            converge = work.converge()
            wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
            proxy.rate = 0.0
            stack.stop_bridge()
            faults = proxy.stats()["faults"]
            requests = sum(proxy.stats()["requests"].values())

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        print(
            f"rpc-faults: seed {seed}; {requests} RPC requests, faults injected {faults}; "
            f"waves picked up in {pickup} s, all converged {converge:.0f} s after the last"
        )
        print(f"rpc-faults: {report.line()}")
        assert sum(faults.values()) > 0.1 * requests


def test_a_node_outage_does_not_spend_the_job_create_budget(tmp_path: Path) -> None:
    # The node fails every eth_getLogs for a while, after the job is stored: the bridge cannot
    # check that the job was not settled meanwhile before creating it. That is the node's fault,
    # not CE's: the job must not be failed as "CE unavailable" meanwhile.
    budget = 2
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        start_bridge=False,
        settings={"create_retry_budget": budget},
    ) as stack:
        assert stack.anvil is not None
        with RpcFaultProxy(
            stack.anvil.url, weights={"http5xx": 1.0}, methods=frozenset({"eth_getLogs"})
        ) as proxy:
            stack.settings = stack.settings.model_copy(update={"rpc_url": proxy.url})
            bridge = stack.start_bridge()
            bridge.set_dispatch_paused(True)  # hold the job until the node fails
            work = Workload(stack)
            (job,) = work.submit(["ok"])

            def stored() -> bool:
                with Session(bridge.db) as session:
                    return session.get(Job, job.job_id) is not None

            wait_for(stored, 60, "the job to be stored")
            tries = _Tries(job.job_id)
            logger = logging.getLogger("bridge.engine")
            logger.addHandler(tries)
            try:
                proxy.rate = 1.0
                bridge.set_dispatch_paused(False)
                wait_for(
                    lambda: tries.count > budget or work.status(job.job_id).is_terminal,
                    60,
                    "the bridge to try the job more times than the budget",
                )
            finally:
                logger.removeHandler(tries)
            proxy.rate = 0.0
            wait_for(work.all_terminal, 60, "the job to end")
        assert work.status(job.job_id) is Status.COMPLETED, tries.count


class _Tries(logging.Handler):
    """Counts the bridge's "job N: attempt k failed" lines for one job."""

    def __init__(self, job_id: int) -> None:
        super().__init__(logging.WARNING)
        self.prefix = f"job {job_id}: attempt "
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.count += 1

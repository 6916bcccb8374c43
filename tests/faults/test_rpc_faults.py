"""RPC faults: 100 mixed jobs with the bridge's node behind a proxy that faults 20% of requests.

The proxy (``tests/faults/rpc_proxy.py``) drops responses after forwarding (so a transaction
reaches the node while the bridge hears nothing), resets connections, delays answers, answers
502/503, and reports a block number that lags the head or goes back. The test's own traffic goes
to Anvil directly. Every job must converge with no duplicate remote job and no write applied
twice (the audit counts and prints the expected ``UpdateSkipped`` items).
"""

from __future__ import annotations

import random
from pathlib import Path

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig
from tests.faults.harness import (
    FAIL_MARKER,
    NEVER_FINISHES,
    Workload,
    audit,
    fault_seed,
    mixed_kinds,
    wait_for,
    writes_settled,
)
from tests.faults.rpc_proxy import RpcFaultProxy

JOBS = 100
FAULT_RATE = 0.2


def test_jobs_converge_through_a_faulty_rpc_node(tmp_path: Path) -> None:
    seed = fault_seed("rpc-faults")
    rng = random.Random(seed)
    db_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    config = EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=0.3,
        fail_commands=frozenset({FAIL_MARKER}),
        never_finish_apps=frozenset({NEVER_FINISHES}),
    )
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
            from_block = int(stack.w3.eth.block_number)
            nonce_before = int(stack.w3.eth.get_transaction_count(stack.roles.operator))
            stack.start_bridge()
            proxy.rate = FAULT_RATE
            work = Workload(stack)
            kinds = mixed_kinds(JOBS, rng)
            pickup: list[float] = []
            for wave in (kinds[:25], kinds[25:50], kinds[50:75], kinds[75:]):
                submitted = work.submit(wave)
                took = wait_for(
                    lambda batch=submitted: all(
                        work.status(j.job_id) != Status.SUBMITTED for j in batch
                    ),
                    120,
                    "the wave to be picked up",
                    interval=0.25,
                    between=work.send_due_cancellations,
                )
                pickup.append(round(took, 1))
            try:
                converge = wait_for(
                    work.all_terminal, 240, "every job to be terminal on-chain", interval=0.5
                )
            except AssertionError:
                print("not terminal:", work.not_terminal()[:20])
                raise
            wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
            proxy.rate = 0.0
            stack.stop_bridge()
            faults = proxy.stats()["faults"]
            requests = sum(proxy.stats()["requests"].values())

        report = audit(
            stack,
            work.jobs,
            database_url=db_url,
            from_block=from_block,
            operator_nonce_before=nonce_before,
        )
        print(
            f"rpc-faults: seed {seed}; {requests} RPC requests, faults injected {faults}; "
            f"waves picked up in {pickup} s, all converged {converge:.0f} s after the last"
        )
        print(f"rpc-faults: {report.line()}")
        assert sum(faults.values()) > 0.1 * requests


def test_a_node_outage_does_not_spend_the_job_create_budget(tmp_path: Path) -> None:
    # Every eth_call fails for a while: the bridge cannot check a job before creating it. That is
    # the node's fault, not CE's: the job must not be failed as "CE unavailable" meanwhile.
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
            stack.anvil.url, weights={"http5xx": 1.0}, methods=frozenset({"eth_call"})
        ) as proxy:
            stack.settings = stack.settings.model_copy(update={"rpc_url": proxy.url})
            stack.start_bridge()
            proxy.rate = 1.0
            work = Workload(stack)
            (job,) = work.submit(["ok"])
            # web3 itself tries an eth_call 5 times before the bridge sees the failure.
            wait_for(
                lambda: proxy.stats()["requests"].get("eth_call", 0) >= 5 * (budget + 1),
                60,
                "the bridge to try the job more times than the budget",
            )
            proxy.rate = 0.0
            wait_for(work.all_terminal, 60, "the job to end")
        assert work.status(job.job_id) is Status.COMPLETED

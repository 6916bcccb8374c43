"""Several RPC endpoints: the bridge on ``BRIDGE_RPC_URLS`` of two Anvil-backed proxies, the
preferred one of which misbehaves in turn.

1. It limits ``eth_getLogs`` to 3 blocks (Alchemy's wording): its range shrinks, the other's not.
2. It refuses ``eth_call`` and ``eth_estimateGas`` with a rate-limit error, then fails
   (resets, lost answers, 502/503 on 40% of requests): reads and writes fail over.
3. It lags 20 blocks behind: reads go to the other; broadcasts still reach both.
4. It lies about its head (1,000 blocks ahead): it is taken down, the head is not believed.

Every job converges, the audit passes (no duplicate remote job, no write applied twice, nonces
without gaps), and no credential of either URL reaches a log line.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from web3.types import RPCEndpoint

from bridge.chain.rpc import FailoverProvider
from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from tests.faults.harness import (
    RunStart,
    Workload,
    audit,
    fault_seed,
    mixed_emulator,
    mixed_kinds,
    wait_for,
    writes_settled,
)
from tests.faults.rpc_proxy import RpcFaultProxy

WAVE = 8
PATH_TOKEN = "pathtoken0123456789abcdef"
QUERY_KEY = "querykey-secret-42"
PASSWORD = "p4ssw0rd-secret"


def _scanned_to(stack: LocalStack) -> int:
    from sqlmodel import Session

    from bridge.store.models import ScanCursor

    assert stack.bridge is not None
    with Session(stack.bridge.db) as session:
        row = session.get(ScanCursor, stack.settings.contract_address)
        return -1 if row is None else row.block


def test_jobs_complete_through_two_endpoints_one_failing_lagging_and_lying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed = fault_seed("rpc-failover")
    rng = random.Random(seed)
    db_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    caplog.set_level(logging.INFO, logger="bridge")
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        database_url=db_url,
        emulator_config=mixed_emulator(),
        start_bridge=False,
        settings={"tx_stuck_after": 10.0},
    ) as stack:
        assert stack.anvil is not None
        faults = {"reset": 1.0, "drop": 1.0, "http5xx": 1.0}
        with (
            RpcFaultProxy(stack.anvil.url, seed=seed, weights=faults) as bad,
            RpcFaultProxy(stack.anvil.url, seed=seed + 1) as good,
        ):
            bad_url = f"{bad.url}/v3/{PATH_TOKEN}?apikey={QUERY_KEY}"
            good_url = good.url.replace("http://", f"http://operator:{PASSWORD}@") + "/"
            stack.settings = stack.settings.model_copy(
                update={"rpc_urls": f"{bad_url}, {good_url}", "rpc_max_lag": 3}
            )
            start = RunStart.of(stack)
            stack.w3.provider.make_request(RPCEndpoint("anvil_mine"), [hex(40)])

            # 1. A provider's eth_getLogs limit shrinks that provider's range only.
            bad.log_range = 3
            bridge = stack.start_bridge()
            provider = bridge.w3.provider
            assert isinstance(provider, FailoverProvider)
            head = int(stack.w3.eth.block_number)
            wait_for(lambda: _scanned_to(stack) >= head - 1, 60, "the scan to catch up")
            bad_health, good_health = provider.health()
            assert bad_health.log_range is not None and bad_health.log_range <= 3
            assert good_health.log_range is None
            assert bad.refused["eth_getLogs"] > 0

            work = Workload(stack)

            def wave(what: str) -> None:
                submitted = work.submit(mixed_kinds(WAVE, rng))
                try:
                    wait_for(
                        lambda: all(work.status(j.job_id).is_terminal for j in submitted),
                        180,
                        f"the jobs to converge while the first endpoint {what}",
                        interval=0.25,
                        between=work.send_due_cancellations,
                    )
                except AssertionError:
                    print("not terminal:", work.not_terminal(), provider.health())
                    raise

            # 2. It refuses, then it fails.
            bad.refuse = frozenset({"eth_call", "eth_estimateGas"})
            wave("refuses eth_call")
            # The writer's simulation asks eth_estimateGas first: the refusal of either (or
            # both) marks the endpoint down, and the other is asked meanwhile.
            assert bad.refused["eth_call"] + bad.refused["eth_estimateGas"] > 0
            bad.refuse = frozenset()
            bad.rate = 0.4
            wave("fails")
            assert sum(bad.stats()["faults"].values()) > 0
            bad.rate = 0.0

            # 3. It lags.
            bad.head_offset = -20
            wait_for(lambda: provider.health()[0].lagging, 30, "the lag to be seen", interval=0.2)
            sent_before = bad.stats()["requests"].get("eth_sendRawTransaction", 0)
            wave("lags")
            assert bad.stats()["requests"].get("eth_sendRawTransaction", 0) > sent_before
            assert good.stats()["requests"].get("eth_sendRawTransaction", 0) > 0

            # 4. It lies about its head.
            bad.head_offset = 1000
            wave("lies about its head")
            assert "claimed head" in str(provider.health()[0].last_error)
            assert int(bridge.reader.head()) < int(stack.w3.eth.block_number) + 10

            bad.head_offset = 0
            wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
            stack.stop_bridge()

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        print(f"rpc-failover: {report.line()}; endpoints {provider.health()}")
        assert all(work.status(j.job_id) != Status.SUBMITTED for j in work.jobs)
    text = caplog.text
    for secret in (PATH_TOKEN, QUERY_KEY, PASSWORD):
        assert secret not in text
    assert "RPC endpoint" in text  # the failovers were logged (redacted)

"""Stuck and foreign transactions, and an operator account that cannot pay, at the bridge level.

The transaction manager's own tests (``tests/integration/test_tx_manager.py``) drive ``tick()``
by hand with a fake clock; here the whole bridge runs on its threads against Anvil and the test
only changes the chain under it:

- mining paused, or the base fee raised far above what the bridge's write offers: the stuck
  write is replaced (same nonce, higher fees) and lands, and the job completes;
- the operator account has no ETH: one clear alert naming the account and its balance, repeated
  with a growing back-off rather than a spin, and the job completes once the account is funded;
- someone else sends transactions with the operator key, one of them taking the nonce of a
  write the bridge has already broadcast: the bridge moves its updates to a fresh nonce and
  every job completes, with no gap in its nonces.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_typing import ChecksumAddress
from sqlmodel import Session, col, select
from web3 import Web3
from web3.types import Nonce, Wei

from bridge.devchain import rpc
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import ChainTx, TxState
from bridge.tx import NONCE_TAKEN
from tests.faults.harness import RunStart, Submitted, audit, job_spec, wait_for, writes_settled

BLOCK_TIME = 1
STUCK_AFTER = 2.0


@pytest.fixture
def stack(tmp_path: Path, fault_db_url: str) -> Iterator[LocalStack]:
    config = EmulatorConfig(provisioning_seconds=0.1, downloading_seconds=0.1, running_seconds=0.2)
    with LocalStack(
        tmp_path,
        block_time=BLOCK_TIME,
        confirmations=1,
        database_url=fault_db_url,
        emulator_config=config,
        settings={"tx_stuck_after": STUCK_AFTER},
    ) as running:
        yield running


def _anvil(stack: LocalStack, method: str, *params: object) -> object:
    assert stack.anvil is not None
    return rpc(stack.anvil.url, method, list(params))


def _txs(stack: LocalStack) -> list[ChainTx]:
    assert stack.bridge is not None
    with Session(stack.bridge.db) as session:
        return list(session.exec(select(ChainTx).order_by(col(ChainTx.nonce))).all())


def _submit(stack: LocalStack, index: int, *, mine: bool = False) -> Submitted:
    """Submits a completing job; with ``mine``, mines its block by hand (mining is paused)."""
    spec = job_spec("ok", index)
    price = int(stack.escrow.functions.quote(spec.to_abi(), 0).call())
    user = stack.roles.user
    tx = stack.escrow.functions.submitJob(spec.to_abi(), 0).transact(
        {"from": user, "value": Wei(price), "gas": 500_000}
    )
    if mine:
        _anvil(stack, "anvil_mine", 1)
    receipt = stack.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
    (event,) = stack.escrow.events.JobSubmitted().process_receipt(receipt)
    return Submitted(
        int(event["args"]["jobId"]), "ok", price, user, Web3.to_hex(tx), receipt["blockNumber"]
    )


def _status(stack: LocalStack, job_id: int) -> int:
    return int(stack.escrow.functions.getJob(job_id).call()[1])


def _completed(stack: LocalStack, jobs: list[Submitted]) -> bool:
    return all(_status(stack, j.job_id) == 4 for j in jobs) and writes_settled(
        stack.settings.database_url
    )


def _broadcast_write(stack: LocalStack) -> ChainTx:
    """Waits for the bridge to broadcast a write (mining is paused, so it stays pending)."""
    found: list[ChainTx] = []

    def broadcast() -> bool:
        found[:] = [t for t in _txs(stack) if t.broadcast_at is not None and t.mined_block is None]
        return bool(found)

    wait_for(broadcast, 30, "the bridge to broadcast a write")
    return found[0]


@pytest.mark.parametrize("cause", ["mining paused", "base fee raised"])
def test_a_stuck_write_is_replaced_and_lands(stack: LocalStack, cause: str) -> None:
    _anvil(stack, "evm_setIntervalMining", 0)
    job = _submit(stack, 1, mine=True)
    _anvil(stack, "anvil_mine", 1)  # its confirmation
    first = _broadcast_write(stack)
    started = time.monotonic()
    if cause == "base fee raised":
        _anvil(stack, "anvil_setNextBlockBaseFeePerGas", hex(first.max_fee_per_gas * 30))
        _anvil(stack, "evm_setIntervalMining", BLOCK_TIME)

    def replaced() -> bool:
        row = next(t for t in _txs(stack) if t.id == first.id)
        return row.attempt >= 1

    wait_for(replaced, 30, "the stuck write to be replaced")
    if cause == "mining paused":
        _anvil(stack, "evm_setIntervalMining", BLOCK_TIME)
    wait_for(lambda: _completed(stack, [job]), 60, "the job to complete")
    took = time.monotonic() - started

    row = next(t for t in _txs(stack) if t.id == first.id)
    hashes = row.hashes.split(",")
    assert row.state == TxState.CONFIRMED and row.nonce == first.nonce
    assert hashes[0] == first.tx_hash and row.tx_hash in hashes[1:]  # a replacement was mined
    assert row.max_fee_per_gas > first.max_fee_per_gas
    print(
        f"stuck ({cause}): replaced {row.attempt}x, max fee {first.max_fee_per_gas} -> "
        f"{row.max_fee_per_gas} wei; job completed {took:.1f} s after the write got stuck"
    )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record))

    def alerts(self) -> list[tuple[float, str]]:
        return [
            (at, r.getMessage())
            for at, r in self.records
            if r.levelno >= logging.ERROR and "insufficient funds" in r.getMessage()
        ]


def test_an_operator_without_funds_is_an_alert_not_a_spin(stack: LocalStack) -> None:
    operator = Web3.to_checksum_address(stack.roles.operator)
    _anvil(stack, "anvil_setBalance", operator, "0x0")
    handler = _Records()
    logger = logging.getLogger("bridge")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        job = _submit(stack, 1)
        wait_for(lambda: len(handler.alerts()) >= 3, 60, "the alert to repeat")
        alerts = handler.alerts()
        _anvil(stack, "anvil_setBalance", operator, hex(10**19))
        wait_for(lambda: _completed(stack, [job]), 90, "the job to complete once funded")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    gaps = [round(b[0] - a[0], 1) for a, b in itertools.pairwise(alerts)]
    first = alerts[0][1]
    assert operator in first and "0 wei" in first and "fund the account" in first, first
    # Each failed round logs its lines together; rounds are seconds apart, growing: no spin.
    rounds = [g for g in gaps if g > 0.5]
    assert rounds and min(rounds) >= 4.0, gaps
    assert len(alerts) <= 2 * (len(rounds) + 1), gaps
    print(f"insufficient funds: {len(alerts)} alert lines, gaps {gaps} s")


def test_transactions_sent_by_someone_else_with_the_operator_key(stack: LocalStack) -> None:
    operator: ChecksumAddress = Web3.to_checksum_address(stack.roles.operator)
    other = Web3.to_checksum_address(stack.roles.admin)
    start = RunStart.of(stack)
    # 1. While the bridge is idle: the next write must simply use the next nonce.
    idle = stack.w3.eth.send_transaction({"from": operator, "to": other, "value": Wei(1)})
    stack.w3.eth.wait_for_transaction_receipt(idle, timeout=30)
    first = _submit(stack, 1)
    wait_for(lambda: _completed(stack, [first]), 60, "the first job to complete")

    # 2. Racing a broadcast write: the foreign transaction takes its nonce.
    _anvil(stack, "evm_setIntervalMining", 0)
    second = _submit(stack, 2, mine=True)
    _anvil(stack, "anvil_mine", 1)
    pending = _broadcast_write(stack)
    foreign = stack.w3.eth.send_transaction(
        {
            "from": operator,
            "to": other,
            "value": Wei(1),
            "nonce": Nonce(pending.nonce),
            "gas": 21_000,
            "maxFeePerGas": Wei(pending.max_fee_per_gas * 3),
            "maxPriorityFeePerGas": Wei(pending.max_priority_fee_per_gas * 3),
        }
    )
    _anvil(stack, "evm_setIntervalMining", BLOCK_TIME)
    assert stack.w3.eth.wait_for_transaction_receipt(foreign, timeout=30)["status"] == 1
    wait_for(lambda: _completed(stack, [second]), 60, "the second job to complete")

    lost = next(t for t in _txs(stack) if t.id == pending.id)
    assert (lost.state, lost.error) == (TxState.FATAL, NONCE_TAKEN)
    report = audit(
        stack,
        [first, second],
        database_url=stack.settings.database_url,
        start=start,
        foreign_nonces=2,
    )
    print(f"foreign txs: {report.line()}")

"""Chain reorganisations, made with ``anvil_reorg`` while the bridge is driven step by step.

Anvil mines only when the test says so (automine and interval mining off), and the test runs the
bridge's three loops itself (``scan_once``, ``work_once``, ``tx_once``), mining a block between
rounds, so each reorg lands exactly where the test wants it:

(a) a submission reorged out before it has ``BRIDGE_CONFIRMATIONS`` is never sent to CE, and a
    different submission that gets the same job id afterwards runs normally;
(b) a submission reorged out after its remote job was created (a reorg deeper than the
    confirmations) is detected: the remote job is cancelled and the job recorded ``orphaned``,
    and no write of the vanished job lands on the new chain; when the new chain gives the same
    job id to a different submission, the old remote job is cancelled and the new submission
    gets its own remote job (its ``Idempotency-Key`` carries a generation suffix) and its own
    writes; when the new chain holds the *same* submission (its transaction moved to another
    block), the bridge keeps its progress and creates nothing twice;
(c) bridge writes (accepts, completions, whole batches) that a reorg removes, even once
    confirmed, are sent again and land.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hexbytes import HexBytes
from sqlmodel import Session, col, select
from web3 import Web3
from web3.types import Nonce, Wei

from bridge.chain.spec import JobSpec, Status
from bridge.devchain import rpc
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.engine.states import JobState
from bridge.remote.convention import CEStatus
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import ChainTx, Job, ScanCursor, TxState
from tests.faults.harness import (
    NEVER_FINISHES,
    emulator_job,
    emulator_stats,
    fault_database,
    job_key,
    job_spec,
    wait_for,
    writes_settled,
)
from tests.faults.rpc_proxy import RpcFaultProxy

CONFIRMATIONS = 2
TIMEOUT = 60.0


@dataclass(frozen=True)
class Sent:
    """A submission signed by the test: its raw bytes can be put back into a reorged chain."""

    raw: str
    tx_hash: str
    price: int


class Driver:
    """Mines on demand and runs the bridge's loops by hand."""

    def __init__(self, stack: LocalStack, bridge: Bridge) -> None:
        assert stack.anvil is not None
        self.stack = stack
        self.bridge = bridge
        self.url = stack.anvil.url
        self.w3 = stack.w3
        self.escrow = stack.escrow
        self.user = Account.from_key(stack.roles.keys[2])

    def mine(self, blocks: int = 1) -> None:
        rpc(self.url, "anvil_mine", [blocks])

    def step(self) -> None:
        self.bridge.scan_once()
        self.bridge.work_once()
        self.bridge.tx_once()

    def run_until(self, condition: Callable[[], bool], what: str, *, mine: bool = True) -> None:
        """Steps (mining a block per round) until ``condition`` holds, within TIMEOUT."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            self.step()
            if condition():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {TIMEOUT:.0f}s waiting for {what}")
            if mine:
                self.mine()
            time.sleep(0.03)

    def sign_submission(self, spec: JobSpec, nonce: int | None = None) -> Sent:
        """A signed ``submitJob`` from the user, not sent."""
        price = int(self.escrow.functions.quote(spec.to_abi(), 0).call())
        if nonce is None:
            nonce = int(self.w3.eth.get_transaction_count(self.user.address, "pending"))
        tx = self.escrow.functions.submitJob(spec.to_abi(), 0).build_transaction(
            {
                "from": self.user.address,
                "value": Wei(price),
                "nonce": Nonce(nonce),
                "gas": 500_000,
                "maxFeePerGas": Wei(50 * 10**9),
                "maxPriorityFeePerGas": Wei(10**9),
                "chainId": int(self.w3.eth.chain_id),
            }
        )
        signed = self.user.sign_transaction(tx)
        return Sent(Web3.to_hex(signed.raw_transaction), Web3.to_hex(signed.hash), price)

    def submit(self, spec: JobSpec) -> tuple[int, Sent]:
        """Submits ``spec``, mines it; returns the job id and the signed submission."""
        sent = self.sign_submission(spec)
        self.w3.eth.send_raw_transaction(HexBytes(sent.raw))
        self.mine()
        receipt = self.w3.eth.get_transaction_receipt(HexBytes(sent.tx_hash))
        assert receipt["status"] == 1
        (event,) = self.escrow.events.JobSubmitted().process_receipt(receipt)
        return int(event["args"]["jobId"]), sent

    def block_of(self, tx_hash: str) -> int:
        return int(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))["blockNumber"])

    def reorg(self, depth: int, txs: list[tuple[str, int]] | None = None) -> None:
        """Replaces the last ``depth`` blocks with as many new ones holding ``txs``."""
        rpc(self.url, "anvil_reorg", [depth, [[raw, offset] for raw, offset in txs or []]])

    def status(self, job_id: int) -> Status:
        return Status(self.escrow.functions.getJob(job_id).call()[1])

    def job(self, job_id: int) -> Job | None:
        with Session(self.bridge.db) as session:
            row = session.get(Job, job_id)
            if row is not None:
                session.expunge(row)
            return row

    def cursor(self) -> int:
        with Session(self.bridge.db) as session:
            row = session.get(ScanCursor, self.bridge.contract)
            return -1 if row is None else row.block

    def txs(self) -> list[ChainTx]:
        with Session(self.bridge.db) as session:
            return list(session.exec(select(ChainTx).order_by(col(ChainTx.nonce))).all())

    def events(self, name: str, job_id: int) -> list[Any]:
        return list(
            self.escrow.events[name]().get_logs(from_block=0, argument_filters={"jobId": job_id})
        )


@contextlib.contextmanager
def _driver(tmp_path: Path, proxy: bool = False) -> Iterator[tuple[Driver, RpcFaultProxy | None]]:
    """A stack with mining by hand and a bridge that is not started (the test steps it); with
    ``proxy``, the bridge reaches the node through an ``RpcFaultProxy`` (no faults)."""
    config = EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=0.3,
        never_finish_apps=frozenset({NEVER_FINISHES}),
    )
    with (
        fault_database(tmp_path) as db_url,
        LocalStack(
            tmp_path,
            block_time=None,
            confirmations=CONFIRMATIONS,
            database_url=db_url,
            emulator_config=config,
            start_bridge=False,
            settings={"tx_stuck_after": 600.0},
        ) as stack,
    ):
        assert stack.anvil is not None
        rpc(stack.anvil.url, "evm_setAutomine", [False])
        with contextlib.ExitStack() as exits:
            settings = stack.settings
            front = None
            if proxy:
                front = exits.enter_context(RpcFaultProxy(stack.anvil.url))
                settings = settings.model_copy(update={"rpc_url": front.url})
            bridge = Bridge.from_settings(settings)
            exits.callback(bridge.stop)
            yield Driver(stack, bridge), front


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    with _driver(tmp_path) as (made, _):
        yield made


def test_a_submission_reorged_out_before_its_confirmations_is_never_sent(driver: Driver) -> None:
    job_id, first = driver.submit(job_spec("ok", 1, salt="-first"))
    block = driver.block_of(first.tx_hash)
    for _ in range(CONFIRMATIONS - 1):  # one block short of the confirmations
        driver.step()
        driver.mine()
    driver.step()
    assert driver.job(job_id) is None
    assert emulator_stats(driver.stack)["create_calls"] == 0

    driver.reorg(int(driver.w3.eth.block_number) - block + 1)
    assert driver.status(job_id) is Status.NONE
    driver.run_until(lambda: driver.cursor() > block + 2, "the scan to pass the old block")
    assert driver.job(job_id) is None
    assert emulator_stats(driver.stack)["create_calls"] == 0

    # The job id comes free again: a different submission gets it and runs normally.
    again, _ = driver.submit(job_spec("ok", 2, salt="-second"))
    assert again == job_id
    driver.run_until(lambda: driver.status(job_id) is Status.COMPLETED, "the new job to complete")
    entry = emulator_stats(driver.stack)["by_key"][job_key(driver.stack, job_id)]
    assert entry["jobs"] == 1
    remote = emulator_job(driver.stack, entry["remoteJobIds"][0])
    assert remote["request"]["commandLine"] == job_spec("ok", 2, salt="-second").command_line


def test_a_dispatched_submission_reorged_out_is_orphaned_and_cancelled(driver: Driver) -> None:
    job_id, sent = driver.submit(job_spec("never", 1))
    block = driver.block_of(sent.tx_hash)
    driver.run_until(
        lambda: (
            driver.status(job_id) >= Status.ACCEPTED
            and writes_settled(driver.stack.settings.database_url)
        ),
        "the accept to be confirmed",
    )
    row = driver.job(job_id)
    assert row is not None and row.remote_job_id
    remote_id = row.remote_job_id

    driver.reorg(int(driver.w3.eth.block_number) - block + 1)  # deeper than the confirmations
    assert driver.status(job_id) is Status.NONE
    driver.run_until(
        lambda: (j := driver.job(job_id)) is not None and j.state == JobState.ORPHANED,
        "the job to be orphaned",
    )
    wait_for(
        lambda: emulator_job(driver.stack, remote_id)["status"] == CEStatus.ABORTED,
        TIMEOUT,
        "the remote job to be cancelled",
        between=driver.step,
    )
    driver.run_until(
        lambda: writes_settled(driver.stack.settings.database_url), "the writes to settle"
    )
    for _ in range(CONFIRMATIONS + 2):
        driver.step()
        driver.mine()
    # Nothing of the vanished job was written to the new chain, not even a skipped item.
    assert driver.status(job_id) is Status.NONE
    assert not driver.events("JobAccepted", job_id)
    assert not driver.events("UpdateSkipped", job_id)
    assert emulator_stats(driver.stack)["by_key"][job_key(driver.stack, job_id)]["jobs"] == 1


def test_a_job_id_reused_by_another_submission_gets_its_own_run(driver: Driver) -> None:
    job_id, sent = driver.submit(job_spec("never", 1))
    block = driver.block_of(sent.tx_hash)
    nonce = int(driver.w3.eth.get_transaction(HexBytes(sent.tx_hash))["nonce"])
    driver.run_until(
        lambda: (
            driver.status(job_id) >= Status.ACCEPTED
            and writes_settled(driver.stack.settings.database_url)
        ),
        "the accept to be confirmed",
    )
    row = driver.job(job_id)
    assert row is not None and row.remote_job_id
    old_remote = row.remote_job_id

    # The new chain holds another submission, signed with the same account nonce: same job id.
    other_spec = job_spec("ok", 2, salt="-other")
    other = driver.sign_submission(other_spec, nonce=nonce)
    driver.reorg(int(driver.w3.eth.block_number) - block + 1, [(other.raw, 0)])
    (submitted,) = driver.events("JobSubmitted", job_id)
    assert Web3.to_hex(submitted["transactionHash"]) == other.tx_hash

    driver.run_until(
        lambda: (r := driver.job(job_id)) is not None and r.state == JobState.SETTLED,
        "the new job to complete and settle",
    )
    assert driver.status(job_id) is Status.COMPLETED
    wait_for(
        lambda: emulator_job(driver.stack, old_remote)["status"] == CEStatus.ABORTED,
        TIMEOUT,
        "the old remote job to be cancelled",
        between=driver.step,
    )
    keys = emulator_stats(driver.stack)["by_key"]
    first, second = keys[job_key(driver.stack, job_id)], keys[f"{job_key(driver.stack, job_id)}:1"]
    assert first["remoteJobIds"] == [old_remote]
    assert second["jobs"] == 1 and second["remoteJobIds"] != [old_remote]
    new_remote = second["remoteJobIds"][0]
    assert emulator_job(driver.stack, new_remote)["request"]["commandLine"] == (
        other_spec.command_line
    )
    # The new submission's writes, and none of the old one's.
    accepted = driver.events("JobAccepted", job_id)
    assert [e["args"]["remoteJobId"] for e in accepted] == [new_remote]
    assert not driver.events("UpdateSkipped", job_id)
    row = driver.job(job_id)
    assert row is not None and row.remote_job_id == new_remote and row.state == JobState.SETTLED


def test_the_same_submission_in_another_block_keeps_its_progress(driver: Driver) -> None:
    job_id, sent = driver.submit(job_spec("never", 1))
    block = driver.block_of(sent.tx_hash)
    driver.run_until(
        lambda: (
            driver.status(job_id) >= Status.ACCEPTED
            and writes_settled(driver.stack.settings.database_url)
        ),
        "the accept to be confirmed",
    )
    row = driver.job(job_id)
    assert row is not None and row.remote_job_id
    remote_id = row.remote_job_id

    # The same signed submission lands one block later in the new chain.
    driver.reorg(int(driver.w3.eth.block_number) - block + 1, [(sent.raw, 1)])
    assert driver.block_of(sent.tx_hash) == block + 1
    driver.run_until(
        lambda: driver.status(job_id) >= Status.ACCEPTED, "the accept to land on the new chain"
    )
    row = driver.job(job_id)
    assert row is not None and row.remote_job_id == remote_id and row.state != JobState.ORPHANED
    entry = emulator_stats(driver.stack)["by_key"][job_key(driver.stack, job_id)]
    assert entry == {"calls": 1, "jobs": 1, "remoteJobIds": [remote_id]}
    assert emulator_job(driver.stack, remote_id)["status"] != CEStatus.ABORTED
    (accepted,) = driver.events("JobAccepted", job_id)
    assert accepted["args"]["remoteJobId"] == remote_id

    # It still ends normally: the requester cancels it.
    tx = driver.escrow.functions.cancelJob(job_id).transact({"from": driver.user.address})
    driver.mine()
    assert driver.w3.eth.get_transaction_receipt(tx)["status"] == 1
    driver.run_until(lambda: driver.status(job_id) is Status.CANCELLED, "the cancellation")


@pytest.mark.parametrize("when", ["unconfirmed", "confirmed"])
def test_writes_removed_by_a_reorg_are_sent_again(driver: Driver, when: str) -> None:
    submitted = [driver.submit(job_spec("ok", i)) for i in range(3)]
    jobs = [job_id for job_id, _ in submitted]
    last_submission = max(driver.block_of(sent.tx_hash) for _, sent in submitted)
    db_url = driver.stack.settings.database_url
    if when == "unconfirmed":
        # Reorg as soon as the first write is mined, before it has its confirmations.
        driver.run_until(
            lambda: any(t.mined_block is not None for t in driver.txs()), "a write to be mined"
        )
    else:
        # Reorg once everything is done: every write confirmed, every job settled.
        driver.run_until(
            lambda: (
                all(driver.status(j) is Status.COMPLETED for j in jobs)
                and writes_settled(db_url)
                and all(
                    (r := driver.job(j)) is not None and r.state == JobState.SETTLED for j in jobs
                )
            ),
            "every job to settle",
        )
    before = {t.nonce: t.tx_hash for t in driver.txs()}
    first_write = min(t.mined_block for t in driver.txs() if t.mined_block is not None)
    assert last_submission < first_write  # the reorg keeps every submission
    driver.reorg(int(driver.w3.eth.block_number) - first_write + 1)
    assert all(driver.status(j) is Status.SUBMITTED for j in jobs)

    driver.run_until(
        lambda: all(driver.status(j) is Status.COMPLETED for j in jobs) and writes_settled(db_url),
        "every job to complete again",
    )
    after = {t.nonce: t for t in driver.txs()}
    # The stored transactions were re-sent as they were: same nonces, same hashes, all mined.
    for nonce, tx_hash in before.items():
        assert after[nonce].tx_hash == tx_hash and after[nonce].state == TxState.CONFIRMED
    stats = emulator_stats(driver.stack)
    assert all(stats["by_key"][job_key(driver.stack, j)]["calls"] == 1 for j in jobs)
    for j in jobs:
        assert len(driver.events("JobCompleted", j)) == 1


def test_a_reorg_while_a_range_is_being_read_is_not_missed(tmp_path: Path) -> None:
    # The chain is reorganised right after the bridge's eth_getLogs was answered, before it
    # reads the hash of the range's last block: the logs are the old chain's, the hash the new
    # one's. Stored together, the old chain's submission would never be re-checked.
    with _driver(tmp_path, proxy=True) as (driver, proxy):
        assert proxy is not None
        job_id, sent = driver.submit(job_spec("ok", 1))
        block = driver.block_of(sent.tx_hash)
        driver.mine(CONFIRMATIONS)
        fired: list[int] = []

        def reorg_after_the_logs(method: str) -> None:
            if method == "eth_getLogs" and not fired:
                fired.append(int(driver.w3.eth.block_number))
                driver.reorg(fired[0] - block + 1)  # the submission's block and all after it

        proxy.after = reorg_after_the_logs
        driver.run_until(lambda: driver.cursor() > block + 2, "the scan to pass the old block")
        assert fired
        assert driver.status(job_id) is Status.NONE
        row = driver.job(job_id)
        assert row is None or row.state == JobState.ORPHANED
        assert emulator_stats(driver.stack)["create_calls"] == 0

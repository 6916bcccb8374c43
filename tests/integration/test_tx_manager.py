"""The transaction manager against a real Anvil and a real SQLite file.

Every test queues ``applyUpdates`` items in ``update_outbox`` as the engine does, drives
``TxManager.tick`` until a condition holds (polling with a deadline, never a fixed sleep), and
checks both the database and the chain: batching and nonces, a batch whose sizing falls short of
its use (raised by the estimate), a crash between the commit and the broadcast, a stuck
transaction replaced with higher fees, items the contract skips, a nonce taken by another
transaction, an account that cannot pay, a key without OPERATOR_ROLE, and a reorg.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound
from web3.types import Nonce, RPCEndpoint, TxParams, Wei

from bridge.chain.deploy import OPERATOR_ROLE
from bridge.chain.spec import Status
from bridge.devchain import Anvil, rpc
from bridge.errors import InsufficientFunds
from bridge.store.db import open_database
from bridge.store.models import ChainTx, TxState, Update
from bridge.tx import NONCE_TAKEN, REVERTED, TickReport, TxManager, policy
from bridge.tx.manager import REVERTED_ALONE
from tests.builders import Accounts, send, spec, status_of, stored_job, submit_via_consumer
from tests.contracts import deploy_test_contract

DEADLINE = 60.0


class FakeClock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Crash(Exception):
    """Stands for the process dying."""


class CrashBeforeSend(TxManager):
    """A manager whose process dies right after the commit, before any byte reaches the node."""

    def _send_raw(self, raw_tx: str) -> None:
        raise Crash("simulated crash after the commit, before the broadcast")


class ForeignTxFirst(TxManager):
    """A manager whose first send comes right after someone else used the key (a race)."""

    foreign: Callable[[], object] | None = None

    def _send_raw(self, raw_tx: str) -> None:
        if self.foreign is not None:
            foreign, self.foreign = self.foreign, None
            foreign()
        super()._send_raw(raw_tx)


class LowGasOnce(TxManager):
    """A manager that under-estimates gas for its first batch, so that one runs out of gas."""

    low = True

    def _simulate(
        self, data: HexBytes, jobs: list[int], counts: Any, sized: int, fees: Any
    ) -> int | None:
        gas = super()._simulate(data, jobs, counts, sized, fees)
        if gas is not None and self.low:
            self.low = False
            return _mined_but_out_of_gas(data)
        return gas


class LowGasWith(TxManager):
    """A manager whose every batch holding job ``poison`` runs out of gas on-chain (as a batch
    would if one item cost more mined than it was sized for)."""

    poison = -1

    def _simulate(
        self, data: HexBytes, jobs: list[int], counts: Any, sized: int, fees: Any
    ) -> int | None:
        gas = super()._simulate(data, jobs, counts, sized, fees)
        if gas is not None and self.poison in jobs:
            return _mined_but_out_of_gas(data)
        return gas


def _mined_but_out_of_gas(data: bytes) -> int:
    """A gas limit just over the least gas a transaction with ``data`` may have (the larger of
    its intrinsic gas and EIP-7623's calldata floor): it is mined (a node refuses less) and
    runs out of gas in its first steps."""
    intrinsic = 21_000 + sum(16 if b else 4 for b in data)
    floor = 21_000 + 10 * sum(4 if b else 1 for b in data)
    return max(intrinsic, floor) + 1_000


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    """A fresh, migrated SQLite file for this test."""
    engine = open_database(f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def operator(accounts: Accounts) -> LocalAccount:
    """The operator key (granted OPERATOR_ROLE by the session's deployment)."""
    account: LocalAccount = Account.from_key(accounts.key(accounts.operator))
    return account


def manager(
    chain: Web3,
    db: Engine,
    account: LocalAccount,
    escrow: Contract,
    cls: type[TxManager] = TxManager,
    **options: object,
) -> TxManager:
    """A TxManager with the test defaults (no confirmations) and ``options`` on top."""
    settings: dict[str, object] = {"confirmations": 0}
    settings.update(options)
    return cls(chain, db, account, escrow, **settings)  # type: ignore[arg-type]


def submit_jobs(chain: Web3, escrow: Contract, user: ChecksumAddress, count: int) -> list[int]:
    """Submits ``count`` typical jobs from ``user``; returns their ids once all are mined."""
    first = int(escrow.functions.nextJobId().call())
    abi_spec = spec().to_abi()
    price = int(escrow.functions.quote(abi_spec, 0).call())
    last = None
    for _ in range(count):
        params: TxParams = {"from": user, "value": Wei(price)}
        last = escrow.functions.submitJob(abi_spec, 0).transact(params)
    assert last is not None
    assert chain.eth.wait_for_transaction_receipt(last, timeout=DEADLINE)["status"] == 1
    return list(range(first, first + count))


def queue(db: Engine, items: list[tuple[int, int, str]]) -> None:
    """Inserts ``(job_id, status, data)`` updates into the outbox, in order, as the engine does."""
    with Session(db) as session:
        for job_id, status, data in items:
            session.add(Update(job_id=job_id, status=status, data=data))
        session.commit()


def accepts(job_ids: list[int]) -> list[tuple[int, int, str]]:
    """Accept updates for ``job_ids`` with remote ids ``ce-<id>``."""
    return [(j, int(Status.ACCEPTED), f"ce-{j}") for j in job_ids]


def txs(db: Engine) -> list[ChainTx]:
    """Every stored transaction, by id."""
    with Session(db) as session:
        return list(session.exec(select(ChainTx).order_by(col(ChainTx.id))).all())


def updates(db: Engine) -> list[Update]:
    """Every outbox row, by id."""
    with Session(db) as session:
        return list(session.exec(select(Update).order_by(col(Update.id))).all())


def all_applied(db: Engine) -> bool:
    """Every queued update has a known outcome (applied or skipped)."""
    return all(u.applied is not None for u in updates(db))


def mine(chain: Web3) -> None:
    """Mines one block."""
    chain.provider.make_request(RPCEndpoint("evm_mine"), [])


def tick_until(
    tx_manager: TxManager,
    chain: Web3,
    condition: Callable[[], bool],
    *,
    mine_blocks: bool = False,
    timeout: float = DEADLINE,
) -> list[TickReport]:
    """Ticks until ``condition()`` holds (mining a block per round if asked); the reports."""
    reports: list[TickReport] = []
    deadline = time.monotonic() + timeout
    while True:
        reports.append(tx_manager.tick())
        if condition():
            return reports
        assert time.monotonic() < deadline, f"condition not met in {timeout}s: {reports[-3:]}"
        if mine_blocks:
            mine(chain)
        time.sleep(0.02)  # polling interval, not an assertion


def receipt_or_none(chain: Web3, tx_hash: str) -> object | None:
    """The receipt of ``tx_hash``, or None if it was never mined."""
    try:
        return chain.eth.get_transaction_receipt(HexBytes(tx_hash))
    except TransactionNotFound:
        return None


# ------------------------------------------------------------------ tests


def test_batches_updates_into_consecutive_nonces(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 120)
    queue(db, accepts(jobs))
    tx_manager = manager(chain, db, operator, escrow, confirmations=2)

    reports = tick_until(
        tx_manager,
        chain,
        lambda: all(t.state == TxState.CONFIRMED for t in txs(db)) and all_applied(db),
        mine_blocks=True,
    )

    stored = sorted(txs(db), key=lambda t: t.nonce)
    assert [t.state for t in stored] == [TxState.CONFIRMED] * 3
    first = stored[0].nonce
    assert [t.nonce for t in stored] == [first, first + 1, first + 2]
    outbox = updates(db)
    sizes = [sum(1 for u in outbox if u.tx_id == t.id) for t in stored]
    assert sizes == [50, 50, 20]
    # Oldest first: the first transaction holds the first 50 queued updates.
    assert [u.job_id for u in outbox if u.tx_id == stored[0].id] == jobs[:50]
    assert all(u.applied is True and u.skip_reason is None for u in outbox)
    assert sum(r.sent for r in reports) == 3
    assert sum(r.confirmed for r in reports) == 3
    assert reports[-1].waiting == 0 and reports[-1].inflight == 0
    for t in stored:
        receipt = chain.eth.get_transaction_receipt(HexBytes(t.tx_hash or ""))
        assert receipt["status"] == 1
        assert t.mined_block == receipt["blockNumber"]
        assert t.gas_used == receipt["gasUsed"]
        assert t.gas_used is not None and t.gas_used <= t.gas_limit
    assert chain.eth.get_transaction_count(operator.address) == first + 3
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_a_batch_sized_short_of_its_use_is_sent_with_the_estimate(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    operator: LocalAccount,
    db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``batch_gas`` sizes each update from its status's costliest case; should a batch ever
    need more, ``eth_estimateGas`` (asked first) raises the limit, and the batch is mined
    instead of being simulated out of gas and left queued round after round."""
    monkeypatch.setattr(policy, "ITEM_GAS_BY_STATUS", {int(Status.ACCEPTED): 1_000})
    jobs = submit_jobs(chain, escrow, accounts.user, 40)
    queue(db, accepts(jobs))
    sized = policy.batch_gas(updates(db), {})
    tx_manager = manager(chain, db, operator, escrow)

    tick_until(
        tx_manager,
        chain,
        lambda: all(t.state == TxState.CONFIRMED for t in txs(db)) and all_applied(db),
        mine_blocks=True,
    )

    (stored,) = txs(db)
    assert stored.gas_used is not None and stored.gas_used > sized, "the sizing fell short"
    assert stored.gas_limit >= stored.gas_used
    assert all(u.applied is True for u in updates(db))
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_crash_between_commit_and_broadcast_resends_the_same_transaction(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 3)
    queue(db, accepts(jobs))
    nonce_before = chain.eth.get_transaction_count(operator.address)

    crashing = manager(chain, db, operator, escrow, cls=CrashBeforeSend)
    with pytest.raises(Crash):
        crashing.tick()
    (stored,) = txs(db)
    assert stored.state == TxState.UNCONFIRMED and stored.nonce == nonce_before
    assert stored.raw_tx and stored.tx_hash and stored.broadcast_at is None
    assert all(u.tx_id == stored.id for u in updates(db))
    with pytest.raises(TransactionNotFound):
        chain.eth.get_transaction(HexBytes(stored.tx_hash))
    # Crashing again on restart still makes no second transaction for the same updates.
    with pytest.raises(Crash):
        manager(chain, db, operator, escrow, cls=CrashBeforeSend).tick()
    assert len(txs(db)) == 1

    restarted = manager(chain, db, operator, escrow)
    tick_until(restarted, chain, lambda: all_applied(db))

    (final,) = txs(db)
    assert final.state == TxState.CONFIRMED
    assert final.tx_hash == stored.tx_hash and final.raw_tx == stored.raw_tx
    assert final.attempt == 0
    mined = chain.eth.get_transaction(HexBytes(stored.tx_hash))
    assert mined["nonce"] == nonce_before
    assert chain.eth.get_transaction_count(operator.address) == nonce_before + 1
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_stuck_transaction_is_replaced_with_higher_fees(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    operator: LocalAccount,
    db: Engine,
    anvil: Anvil,
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 2)
    queue(db, accepts(jobs))
    rpc(anvil.url, "evm_setAutomine", [False])
    clock = FakeClock()
    tx_manager = manager(
        chain, db, operator, escrow, confirmations=1, stuck_after=30.0, clock=clock
    )

    assert tx_manager.tick().sent == 1
    (first,) = txs(db)
    assert chain.eth.get_transaction(HexBytes(first.tx_hash or ""))["blockNumber"] is None
    assert tx_manager.tick().replaced == 0  # not stuck yet

    clock.advance(31.0)
    report = tx_manager.tick()
    assert report.replaced == 1
    (bumped,) = txs(db)
    hashes = bumped.hashes.split(",")
    assert hashes == [first.tx_hash, bumped.tx_hash] and first.tx_hash != bumped.tx_hash
    assert bumped.nonce == first.nonce and bumped.attempt == 1
    assert bumped.max_fee_per_gas >= first.max_fee_per_gas * 125 // 100
    assert bumped.max_priority_fee_per_gas >= first.max_priority_fee_per_gas * 125 // 100
    assert bumped.broadcast_at is not None
    pending = chain.eth.get_transaction(HexBytes(bumped.tx_hash or ""))
    assert pending["maxFeePerGas"] == bumped.max_fee_per_gas

    mine(chain)
    tick_until(tx_manager, chain, lambda: all_applied(db), mine_blocks=True)

    (confirmed,) = txs(db)
    assert confirmed.state == TxState.CONFIRMED
    mined = [h for h in hashes if receipt_or_none(chain, h) is not None]
    assert len(mined) == 1 and confirmed.tx_hash == mined[0]
    assert chain.eth.get_transaction_count(operator.address) == first.nonce + 1
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_underpriced_send_is_bumped_until_the_node_takes_it(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    operator: LocalAccount,
    db: Engine,
    anvil: Anvil,
) -> None:
    (job,) = submit_jobs(chain, escrow, accounts.user, 1)
    queue(db, accepts([job]))
    with pytest.raises(Crash):
        manager(chain, db, operator, escrow, cls=CrashBeforeSend).tick()
    (stored,) = txs(db)
    rpc(anvil.url, "evm_setAutomine", [False])
    # A pending transaction of the same key and nonce pays 1.5x the stored fees.
    foreign = chain.eth.send_transaction(
        {
            "from": operator.address,
            "to": accounts.other,
            "value": Wei(1),
            "nonce": Nonce(stored.nonce),
            "gas": 21_000,
            "maxFeePerGas": Wei(stored.max_fee_per_gas * 3 // 2),
            "maxPriorityFeePerGas": Wei(stored.max_priority_fee_per_gas * 3 // 2),
        }
    )
    tx_manager = manager(chain, db, operator, escrow, fee_bump_percent=25)

    first = tx_manager.tick()  # underpriced: nothing accepted, a bump is due
    assert (first.sent, first.replaced) == (0, 0)
    reports = [tx_manager.tick(), tx_manager.tick()]
    assert [r.replaced for r in reports] == [1, 1]  # 1.25x refused, 1.5625x taken
    (bumped,) = txs(db)
    assert bumped.attempt == 2 and len(bumped.hashes.split(",")) == 3
    assert bumped.max_fee_per_gas > stored.max_fee_per_gas * 3 // 2

    mine(chain)
    tick_until(tx_manager, chain, lambda: all_applied(db))
    (confirmed,) = txs(db)
    assert confirmed.state == TxState.CONFIRMED and confirmed.tx_hash == bumped.tx_hash
    assert receipt_or_none(chain, Web3.to_hex(foreign)) is None
    assert status_of(escrow, job) == Status.ACCEPTED


def test_batch_wait_lets_updates_gather(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 5)
    clock = FakeClock()
    tx_manager = manager(chain, db, operator, escrow, batch_size=4, batch_wait=5.0, clock=clock)
    queue(db, accepts(jobs[:3]))

    # 3 < 4 and the oldest is too young
    assert tx_manager.tick() == TickReport(
        sent=0, confirmed=0, replaced=0, failed=0, waiting=3, inflight=0
    )
    queue(db, accepts(jobs[3:]))
    full = tx_manager.tick()  # a full batch goes at once; the fifth waits
    assert (full.sent, full.waiting) == (1, 1)
    assert tx_manager.tick().sent == 0
    clock.advance(6.0)
    tick_until(tx_manager, chain, lambda: all_applied(db))
    sizes = [sum(1 for u in updates(db) if u.tx_id == t.id) for t in txs(db)]
    assert sizes == [4, 1]


def test_skipped_items_are_recorded_and_reported(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    (job,) = submit_jobs(chain, escrow, accounts.user, 1)
    unknown = job + 1_000_000
    queue(db, accepts([job, unknown]))
    skipped: list[tuple[int, int, str]] = []
    tx_manager = manager(chain, db, operator, escrow, on_skipped=lambda *args: skipped.append(args))

    tick_until(tx_manager, chain, lambda: all_applied(db))

    good, bad = updates(db)
    assert (good.applied, good.skip_reason) == (True, None)
    assert (bad.applied, bad.skip_reason) == (False, "JobNotFound")
    assert good.tx_id == bad.tx_id
    assert skipped == [(unknown, int(Status.ACCEPTED), "JobNotFound")]
    assert status_of(escrow, job) == Status.ACCEPTED


def test_nonce_taken_by_a_foreign_transaction_rebatches_with_a_fresh_nonce(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 2)
    queue(db, accepts(jobs))
    with pytest.raises(Crash):
        manager(chain, db, operator, escrow, cls=CrashBeforeSend).tick()
    (stored,) = txs(db)
    # Someone else uses the operator key and takes the stored transaction's nonce.
    foreign = chain.eth.send_transaction(
        {"from": operator.address, "to": accounts.other, "value": Wei(1)}
    )
    assert chain.eth.get_transaction(foreign)["nonce"] == stored.nonce
    assert chain.eth.wait_for_transaction_receipt(foreign, timeout=DEADLINE)["status"] == 1

    restarted = manager(chain, db, operator, escrow)
    reports = tick_until(restarted, chain, lambda: all_applied(db))

    lost, fresh = txs(db)
    assert (lost.state, lost.error, lost.nonce) == (TxState.FATAL, NONCE_TAKEN, stored.nonce)
    assert receipt_or_none(chain, lost.tx_hash or "") is None
    assert fresh.state == TxState.CONFIRMED and fresh.nonce == stored.nonce + 1
    assert all(u.tx_id == fresh.id and u.applied is True for u in updates(db))
    assert sum(r.failed for r in reports) == 1
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_nonce_taken_between_check_and_send_is_classified_from_the_node_error(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 2)
    queue(db, accepts(jobs))
    tx_manager = manager(chain, db, operator, escrow, cls=ForeignTxFirst)
    assert isinstance(tx_manager, ForeignTxFirst)
    foreign: list[HexBytes] = []

    def use_the_key() -> None:
        tx_hash = chain.eth.send_transaction(
            {"from": operator.address, "to": accounts.other, "value": Wei(1)}
        )
        chain.eth.wait_for_transaction_receipt(tx_hash, timeout=DEADLINE)
        foreign.append(tx_hash)

    tx_manager.foreign = use_the_key
    report = tx_manager.tick()  # "nonce too low" → fatal → the same round re-batches
    assert (report.failed, report.sent) == (1, 1)

    tick_until(tx_manager, chain, lambda: all_applied(db))
    lost, fresh = txs(db)
    assert chain.eth.get_transaction(foreign[0])["nonce"] == lost.nonce
    assert (lost.state, lost.error) == (TxState.FATAL, NONCE_TAKEN)
    assert fresh.state == TxState.CONFIRMED and fresh.nonce == lost.nonce + 1
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_a_batch_reverted_on_chain_is_split_and_never_resent_whole(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 4)
    queue(db, accepts(jobs))
    tx_manager = manager(chain, db, operator, escrow, cls=LowGasOnce, confirmations=1)

    reports = tick_until(tx_manager, chain, lambda: all_applied(db), mine_blocks=True)

    reverted, *fresh = txs(db)
    assert (reverted.state, reverted.error) == (TxState.FATAL, REVERTED)
    assert chain.eth.get_transaction_receipt(HexBytes(reverted.tx_hash or ""))["status"] == 0
    assert [t.state for t in fresh] == [TxState.CONFIRMED, TxState.CONFIRMED]
    assert [t.nonce for t in fresh] == [reverted.nonce + 1, reverted.nonce + 2]
    carried = {t.id: sorted(u.job_id for u in updates(db) if u.tx_id == t.id) for t in fresh}
    assert sorted(carried.values()) == [jobs[:2], jobs[2:]]  # two halves, never the same set
    assert all(u.applied is True for u in updates(db))
    assert sum(r.failed for r in reports) == 1
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_an_update_that_reverts_alone_is_isolated_and_held_with_an_alert(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    operator: LocalAccount,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 4)
    queue(db, accepts(jobs))
    tx_manager = manager(chain, db, operator, escrow, cls=LowGasWith, confirmations=1)
    assert isinstance(tx_manager, LowGasWith)
    tx_manager.poison = jobs[3]

    def settled() -> bool:
        return all(u.applied is not None for u in updates(db))

    with caplog.at_level(logging.WARNING, logger="bridge.tx"):
        tick_until(tx_manager, chain, settled, mine_blocks=True)

    by_job = {u.job_id: u for u in updates(db)}
    assert (by_job[jobs[3]].applied, by_job[jobs[3]].skip_reason) == (False, REVERTED_ALONE)
    assert all(by_job[j].applied is True for j in jobs[:3])
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs[:3])
    assert status_of(escrow, jobs[3]) == Status.SUBMITTED
    # Bisection: {all 4} reverts, then {3rd, 4th}, then {4th} alone: log2(4) + 1 reverts.
    reverted = [t for t in txs(db) if t.error == REVERTED]
    assert len(reverted) == 3
    alerts = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(alerts) == 1 and f"job {jobs[3]}" in alerts[0].getMessage()


@pytest.fixture
def poor(escrow: Contract, accounts: Accounts) -> LocalAccount:
    """A new operator key, granted OPERATOR_ROLE, holding no ETH."""
    account: LocalAccount = Account.create()
    send(escrow.w3, escrow.functions.grantRole(OPERATOR_ROLE, account.address), accounts.admin)
    return account


def test_insufficient_funds_raises_one_clear_error(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    poor: LocalAccount,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain.eth.wait_for_transaction_receipt(
        chain.eth.send_transaction({"from": accounts.admin, "to": poor.address, "value": Wei(7)})
    )
    (job,) = submit_jobs(chain, escrow, accounts.user, 1)
    queue(db, accepts([job]))
    tx_manager = manager(chain, db, poor, escrow)
    key_hex = bytes(poor.key).hex()

    with (
        caplog.at_level(logging.DEBUG, logger="bridge.tx"),
        pytest.raises(InsufficientFunds) as raised,
    ):
        tx_manager.tick()

    message = str(raised.value)
    assert poor.address in message and "7 wei" in message
    assert key_hex not in message and key_hex.upper() not in message.upper()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and poor.address in errors[0].getMessage()
    assert all(key_hex not in r.getMessage().lower() for r in caplog.records)
    # The simulation runs with the real fee fields, so the node refuses it for want of funds:
    # nothing is signed or stored.
    assert txs(db) == []

    # Once funded, the batch goes out.
    chain.eth.wait_for_transaction_receipt(
        chain.eth.send_transaction(
            {"from": accounts.admin, "to": poor.address, "value": Wei(10**18)}
        )
    )
    tick_until(tx_manager, chain, lambda: all_applied(db))
    (sent,) = txs(db)
    assert sent.state == TxState.CONFIRMED
    assert status_of(escrow, job) == Status.ACCEPTED


def test_missing_operator_role_is_an_alert_and_nothing_is_signed(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (job,) = submit_jobs(chain, escrow, accounts.user, 1)
    queue(db, accepts([job]))
    unprivileged: LocalAccount = Account.from_key(accounts.key(accounts.operator2))
    clock = FakeClock()
    tx_manager = manager(chain, db, unprivileged, escrow, clock=clock, revert_backoff=10.0)

    with caplog.at_level(logging.DEBUG, logger="bridge.tx"):
        report = tx_manager.tick()

    assert (report.failed, report.sent, report.waiting) == (1, 0, 1)
    assert txs(db) == [] and updates(db)[0].tx_id is None
    assert any(
        r.levelno == logging.ERROR and "AccessControlUnauthorizedAccount" in r.getMessage()
        for r in caplog.records
    )
    alert = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(alert) == 1 and "OPERATOR_ROLE" in alert[0].getMessage()
    assert accounts.operator2 in alert[0].getMessage()
    assert tx_manager.tick().failed == 0  # backing off, not spinning

    send(chain, escrow.functions.grantRole(OPERATOR_ROLE, accounts.operator2), accounts.admin)
    clock.advance(11.0)
    tick_until(tx_manager, chain, lambda: all_applied(db))
    assert status_of(escrow, job) == Status.ACCEPTED


def test_reorged_out_transaction_is_resent_with_the_same_bytes(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    (job,) = submit_jobs(chain, escrow, accounts.user, 1)
    queue(db, accepts([job]))
    tx_manager = manager(chain, db, operator, escrow, confirmations=2)
    snapshot = chain.provider.make_request(RPCEndpoint("evm_snapshot"), [])["result"]

    assert tx_manager.tick().sent == 1  # automine: mined at once
    tx_manager.tick()
    (mined,) = txs(db)
    assert mined.mined_block is not None and mined.state == TxState.UNCONFIRMED

    # The block with the transaction disappears.
    assert chain.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])["result"] is True
    assert receipt_or_none(chain, mined.tx_hash or "") is None

    tick_until(tx_manager, chain, lambda: all_applied(db), mine_blocks=True)
    (final,) = txs(db)
    assert final.state == TxState.CONFIRMED
    assert final.tx_hash == mined.tx_hash and final.attempt == 0
    assert final.mined_block is not None
    assert status_of(escrow, job) == Status.ACCEPTED


def test_a_consumer_that_burns_its_gas_only_when_mined_cannot_starve_the_batch(
    chain: Web3,
    escrow: Contract,
    consumer: Contract,
    accounts: Accounts,
    operator: LocalAccount,
    db: Engine,
) -> None:
    """Issue 9, finding 2: simulated at gas price 0 such a consumer costs nothing, so a batch
    sized from an estimate left the next callbacks without their gas once mined. Sized from the
    callback limits and simulated with real fees, every item of the batch goes through."""
    burner = deploy_test_contract(
        chain, "SimulationAwareBurnerConsumer", accounts.user, escrow.address
    )
    burning = [submit_via_consumer(chain, escrow, burner, accounts.user, spec(), 1_500_000)[0]]
    burning.append(submit_via_consumer(chain, escrow, burner, accounts.user, spec(), 1_500_000)[0])
    polite = [
        submit_via_consumer(chain, escrow, consumer, accounts.user, spec(), 100_000)[0]
        for _ in range(3)
    ]
    limits = {j: 1_500_000 for j in burning} | {j: 100_000 for j in polite}
    ordered = [burning[0], *polite[:2], burning[1], polite[2]]  # burners ahead of others
    with Session(db) as session:
        for job_id in ordered:
            session.add(stored_job(job_id, callback_gas_limit=limits[job_id]))
        for job_id in ordered:
            session.add(Update(job_id=job_id, status=int(Status.ACCEPTED), data=f"ce-{job_id}"))
        for job_id in ordered:
            session.add(
                Update(
                    job_id=job_id,
                    status=int(Status.COMPLETED),
                    result_hash="0x" + "11" * 32,
                    data=f"https://bridge.example/jobs/{job_id}/outputs/",
                )
            )
        session.commit()
    tx_manager = manager(chain, db, operator, escrow)

    tick_until(tx_manager, chain, lambda: all_applied(db))

    assert all(status_of(escrow, j) == Status.COMPLETED for j in ordered)
    assert all(u.applied is True for u in updates(db)), "an item was skipped"
    assert all(t.state == TxState.CONFIRMED and t.error is None for t in txs(db))
    failed = {
        int(e["args"]["jobId"]) for e in escrow.events.CallbackFailed().get_logs(from_block=0)
    }
    assert failed >= set(burning), "the burners ran, with their whole gas, and failed"
    assert not failed & set(polite), "every other consumer got its callback"


def test_a_mined_batch_waiting_for_its_confirmations_does_not_hold_the_next_one(
    chain: Web3, escrow: Contract, accounts: Accounts, operator: LocalAccount, db: Engine
) -> None:
    jobs = submit_jobs(chain, escrow, accounts.user, 3)
    tx_manager = manager(chain, db, operator, escrow, confirmations=5, batch_size=1, max_inflight=1)
    chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        queue(db, accepts(jobs))
        tick_until(tx_manager, chain, lambda: len(txs(db)) == 1)
        # Sent and not mined: in flight, so the next batch waits.
        for _ in range(5):
            tx_manager.tick()
        assert len(txs(db)) == 1
        mine(chain)  # the first batch is mined, 5 confirmations short of confirmed
        # Mined and waiting for its confirmations: no longer in flight, the next one goes.
        tick_until(tx_manager, chain, lambda: len(txs(db)) == 2)
        first, second = txs(db)
        assert first.state == TxState.UNCONFIRMED and first.mined_block is not None
        assert second.state == TxState.UNCONFIRMED and second.nonce == first.nonce + 1
    finally:
        chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    tick_until(tx_manager, chain, all_applied_and_confirmed(db), mine_blocks=True)


def all_applied_and_confirmed(db: Engine) -> Callable[[], bool]:
    """Every update applied and every transaction confirmed."""
    return lambda: all_applied(db) and all(t.state == TxState.CONFIRMED for t in txs(db))


def test_a_key_funded_for_a_few_batches_keeps_only_those_in_flight(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    poor: LocalAccount,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node takes a key's transaction only while the key can pay every one it holds (geth's
    pool refuses an overdraft), a replacement with higher fees included, so the writer opens a
    batch beside unmined ones only when the balance covers all of them at their worst case and
    a fee bump of each: a key funded for three batches keeps three in flight, however large
    ``max_inflight``, with one warning for the whole backlog (no error, no exception), and
    sends the rest as they are mined."""
    jobs, later = (
        submit_jobs(chain, escrow, accounts.user, 9),
        submit_jobs(chain, escrow, accounts.user, 5),
    )
    bump = 25
    tx_manager = manager(
        chain, db, poor, escrow, batch_size=1, max_inflight=16, fee_bump_percent=bump
    )

    def set_balance(wei: int) -> None:
        chain.provider.make_request(RPCEndpoint("anvil_setBalance"), [poor.address, hex(wei)])

    def unmined() -> list[ChainTx]:
        return [t for t in txs(db) if t.mined_block is None and t.state == TxState.UNCONFIRMED]

    def paid_for() -> bool:
        """The key pays every unmined transaction and a fee bump of each."""
        committed = sum(policy.write_cost(t.gas_limit, t.max_fee_per_gas) for t in unmined())
        return committed * (100 + bump) <= chain.eth.get_balance(poor.address) * 100

    def funds_warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "can pay for" in r.getMessage()]

    chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        set_balance(10**18)
        queue(db, accepts(jobs[:1]))
        tick_until(tx_manager, chain, lambda: len(txs(db)) == 1)
        (first,) = txs(db)
        worst = policy.write_cost(first.gas_limit, first.max_fee_per_gas)
        # Three at their worst case and a 25% bump of each (3.75), not four (5.0).
        set_balance(worst * 44 // 10)
        queue(db, accepts(jobs[1:]))
        with caplog.at_level(logging.INFO, logger="bridge.tx"):
            for _ in range(8):
                tx_manager.tick()
            assert len(unmined()) == 3
            assert paid_for()
            # One block mined while the backlog waits: more go, as many as are paid for, and
            # the warning is not repeated.
            mine(chain)
            for _ in range(8):
                tx_manager.tick()
                assert paid_for()
            assert 3 < len(txs(db)) < len(jobs)
            assert len(funds_warnings()) == 1, "one warning for the backlog, not one a block"
            assert poor.address in funds_warnings()[0].getMessage()
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    set_balance(10**18)
    tick_until(tx_manager, chain, all_applied_and_confirmed(db), mine_blocks=True)
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)
    # Funded, the backlog drained: the next time the key runs short it warns again.
    chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        with caplog.at_level(logging.INFO, logger="bridge.tx"):
            set_balance(worst * 44 // 10)
            queue(db, accepts(later))
            for _ in range(4):
                tx_manager.tick()
            assert len(funds_warnings()) == 2
    finally:
        chain.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    set_balance(10**18)
    tick_until(tx_manager, chain, all_applied_and_confirmed(db), mine_blocks=True)
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs + later)
    nonces = sorted(t.nonce for t in txs(db))
    assert nonces == list(range(nonces[0], nonces[0] + len(nonces)))

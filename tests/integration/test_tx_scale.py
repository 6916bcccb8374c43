"""Several operator keys writing through one PostgreSQL database (real Anvil, real PostgreSQL):
updates claimed by exactly one writer, and a gone key's signed transactions finished by
another key's writer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import Engine
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound

from bridge.chain.deploy import OPERATOR_ROLE
from bridge.chain.spec import Status
from bridge.store.db import open_database
from bridge.store.locks import acquire_process_lock
from bridge.store.models import TxState
from bridge.tx import TxManager
from tests.builders import Accounts, status_of
from tests.integration.test_tx_manager import (
    Crash,
    CrashBeforeSend,
    accepts,
    all_applied,
    manager,
    queue,
    submit_jobs,
    tick_until,
    txs,
    updates,
)
from tests.pg import postgres_database


@pytest.fixture
def pg_db() -> Iterator[tuple[str, Engine]]:
    with postgres_database("ce_bridge_i12tx") as url:
        engine = open_database(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def _keys(chain: Web3, escrow: Contract, accounts: Accounts) -> tuple[LocalAccount, LocalAccount]:
    """The operator key and the second one, granted OPERATOR_ROLE here (the test's snapshot is
    reverted afterwards)."""
    grant = escrow.functions.grantRole(OPERATOR_ROLE, accounts.operator2).transact(
        {"from": accounts.admin}
    )
    assert chain.eth.wait_for_transaction_receipt(grant, timeout=60)["status"] == 1
    one: LocalAccount = Account.from_key(accounts.key(accounts.operator))
    two: LocalAccount = Account.from_key(accounts.key(accounts.operator2))
    return one, two


def test_two_keys_writing_at_once_send_each_update_once(
    chain: Web3, escrow: Contract, accounts: Accounts, pg_db: tuple[str, Engine]
) -> None:
    _, db = pg_db
    one, two = _keys(chain, escrow, accounts)
    jobs = submit_jobs(chain, escrow, accounts.user, 150)
    queue(db, accepts(jobs))
    writers = [manager(chain, db, key, escrow, batch_size=10, max_inflight=2) for key in (one, two)]
    errors: list[BaseException] = []

    def run(writer: TxManager) -> None:
        try:
            tick_until(writer, chain, lambda: all_applied(db))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []

    stored = txs(db)
    assert all(t.state == TxState.CONFIRMED for t in stored)
    senders = Counter(t.sender for t in stored)
    assert set(senders) == {one.address, two.address}  # both keys took a share
    for key in (one, two):  # each key's nonces consecutive
        nonces = sorted(t.nonce for t in stored if t.sender == key.address)
        assert nonces == list(range(nonces[0], nonces[0] + len(nonces)))
    outbox = updates(db)
    assert all(u.applied is True for u in outbox)
    assert len({u.id for u in outbox}) == len(jobs)  # one row each, in exactly one tx
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)


def test_a_gone_keys_signed_tx_is_finished_by_another_key(
    chain: Web3, escrow: Contract, accounts: Accounts, pg_db: tuple[str, Engine]
) -> None:
    url, db = pg_db
    one, two = _keys(chain, escrow, accounts)
    jobs = submit_jobs(chain, escrow, accounts.user, 3)
    queue(db, accepts(jobs))
    nonce_before = chain.eth.get_transaction_count(one.address)

    # Key one's process stores its signed transaction and dies before sending it.
    lock = acquire_process_lock(url, one.address)
    with pytest.raises(Crash):
        manager(chain, db, one, escrow, cls=CrashBeforeSend).tick()
    (stored,) = txs(db)
    assert stored.sender == one.address and stored.state == TxState.UNCONFIRMED

    adopter = manager(chain, db, two, escrow, adopt_after=0.0, adopt_check_every=0.0)
    # While key one's process holds its lock (alive, or back), its transaction is its own.
    for _ in range(3):
        adopter.tick()
    with pytest.raises(TransactionNotFound):
        chain.eth.get_transaction(HexBytes(stored.tx_hash or ""))
    lock.release()

    # Gone: the other key sends the stored bytes (no key needed) and confirms them.
    tick_until(adopter, chain, lambda: all_applied(db))
    (final,) = txs(db)
    assert final.state == TxState.CONFIRMED and final.raw_tx == stored.raw_tx
    mined = chain.eth.get_transaction(HexBytes(stored.tx_hash or ""))
    assert mined["from"] == one.address and mined["nonce"] == nonce_before
    assert all(u.applied is True and u.tx_id == stored.id for u in updates(db))
    assert all(status_of(escrow, j) == Status.ACCEPTED for j in jobs)

"""Fixtures shared by every test of ce-bridge.

One Anvil runs for the whole session; the contracts are deployed on it once, and each test that
touches the chain runs between an ``evm_snapshot`` and an ``evm_revert`` so tests stay
independent of each other and of their order.

Session fixtures:
    ``accounts``: ``Accounts`` — Anvil's default keys 0..9 under named roles (admin, operator,
    user, other, treasury, operator2, spare); needs no node.
    ``anvil``: the running ``bridge.devchain.Anvil`` (``.url``, ``.chain_id``), stopped at the end.
    ``w3``: ``Web3`` connected to it, signing locally for all ten accounts.
    ``deployment``: ``Deployment`` — JobEscrow (admin = accounts.admin, OPERATOR_ROLE granted to
    accounts.operator, treasury = accounts.treasury) and an ExampleConsumer owned by
    accounts.user, with the escrow's deployment block.

Function fixtures (each implies ``chain``):
    ``chain``: the same ``Web3``, inside a snapshot that is reverted after the test (time,
    blocks, balances, nonces and contract state all go back; pending transactions are dropped,
    interval mining is switched off and automine back on).
    ``escrow``: the deployed JobEscrow as a web3 ``Contract``.
    ``consumer``: the deployed ExampleConsumer as a web3 ``Contract``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint

from bridge.chain.deploy import connect, deploy, deploy_escrow
from bridge.chain.deploy import consumer as consumer_at
from bridge.chain.deploy import escrow as escrow_at
from bridge.devchain import Anvil, anvil_key
from tests.builders import Accounts, Deployment

ANVIL_ACCOUNTS = 10


@pytest.fixture(scope="session")
def accounts() -> Accounts:
    """Anvil's default accounts 0..9 with their keys, under named roles."""
    keys = tuple(anvil_key(i) for i in range(ANVIL_ACCOUNTS))
    addresses = tuple(Web3.to_checksum_address(Account.from_key(k).address) for k in keys)
    return Accounts(keys=keys, addresses=addresses)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """One Anvil for the session on a free port (automine: every transaction is its own block)."""
    node = Anvil().start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def w3(anvil: Anvil, accounts: Accounts) -> Web3:
    """A web3 client for the session's Anvil that signs for all of ``accounts`` locally."""
    return connect(anvil.url, accounts.keys)


@pytest.fixture(scope="session")
def deployment(w3: Web3, accounts: Accounts) -> Deployment:
    """JobEscrow (operator granted, treasury set) and ExampleConsumer, deployed once."""
    # Automine: the deployment is the next block.
    block = w3.eth.block_number + 1
    escrow_address = deploy_escrow(
        w3, accounts.admin, operators=[accounts.operator], treasury=accounts.treasury
    )
    consumer_address = deploy(w3, "ExampleConsumer", accounts.user, escrow_address)
    return Deployment(escrow=escrow_address, consumer=consumer_address, block=block)


@pytest.fixture
def chain(w3: Web3, deployment: Deployment) -> Iterator[Web3]:
    """The session's ``Web3``; everything the test does to the chain is reverted afterwards."""
    snapshot = w3.provider.make_request(RPCEndpoint("evm_snapshot"), [])["result"]
    try:
        yield w3
    finally:
        # Undo what a test may have changed outside the state: mining mode and pending txs.
        w3.provider.make_request(RPCEndpoint("anvil_dropAllTransactions"), [])
        w3.provider.make_request(RPCEndpoint("evm_setIntervalMining"), [0])
        w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
        reverted = w3.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])
        assert reverted.get("result") is True, f"evm_revert failed: {reverted}"


@pytest.fixture
def escrow(chain: Web3, deployment: Deployment) -> Contract:
    """The session's JobEscrow, inside this test's snapshot."""
    return escrow_at(chain, deployment.escrow)


@pytest.fixture
def consumer(chain: Web3, deployment: Deployment) -> Contract:
    """The session's ExampleConsumer (owner: ``accounts.user``), inside this test's snapshot."""
    return consumer_at(chain, deployment.consumer)

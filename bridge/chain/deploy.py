"""Connecting to a node and deploying the contracts from abi/.

``connect`` returns a web3 client whose ``transact`` calls are signed locally by the given keys
(web3's SignAndSendRawMiddleware): used by deploy, the CLI's user commands, the demo and the tests.
The bridge's own operator writes go through ``bridge.tx`` instead, which persists them first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.types import TxParams

from bridge.chain.artifacts import load_artifact
from bridge.chain.rpc import FailoverProvider

OPERATOR_ROLE = Web3.keccak(text="OPERATOR_ROLE")


def connect(
    rpc_url: str | Sequence[str],
    keys: Sequence[str] = (),
    timeout: float = 30.0,
    *,
    max_lag: int = 3,
) -> Web3:
    """A web3 client for ``rpc_url`` that signs transactions from ``keys``' accounts locally.

    Its provider is a ``FailoverProvider`` (``bridge.chain.rpc``: bare HTTP on kept-alive
    connections; with several URLs, failover, head checks, per-endpoint log ranges, broadcasts
    to all), ``max_lag`` being the blocks an endpoint may trail the others. It asks each node for
    ``eth_chainId`` once (web3's validation middleware would ask before every ``eth_call``,
    ``eth_estimateGas`` and transaction); nothing else is cached (blocks, logs and receipts are
    always read fresh: reorg detection depends on it).
    """
    urls = [rpc_url] if isinstance(rpc_url, str) else list(rpc_url)
    w3 = Web3(FailoverProvider(urls, timeout=timeout, max_lag=max_lag))
    _sign_with(w3, keys)
    return w3


def _sign_with(w3: Web3, keys: Sequence[str]) -> None:
    accounts: list[LocalAccount] = [Account.from_key(k) for k in keys]
    if accounts:
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(accounts), layer=0)


def escrow(w3: Web3, address: str) -> Contract:
    """The JobEscrow at ``address``."""
    return w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact("JobEscrow").abi
    )


def consumer(w3: Web3, address: str) -> Contract:
    """The ExampleConsumer at ``address``."""
    return w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact("ExampleConsumer").abi
    )


def deploy(w3: Web3, name: str, sender: str, *args: Any) -> ChecksumAddress:
    """Deploys artifact ``name`` from ``sender`` and returns its address once mined."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    address = receipt["contractAddress"]
    if receipt["status"] != 1 or address is None:
        raise RuntimeError(f"deploying {name} reverted (tx {tx_hash.hex()})")
    return Web3.to_checksum_address(address)


def deploy_escrow(
    w3: Web3,
    admin: str,
    operators: Sequence[str] = (),
    treasury: str | None = None,
) -> ChecksumAddress:
    """Deploys JobEscrow with ``admin``, grants OPERATOR_ROLE to each of ``operators`` and sets
    the treasury; all transactions are sent from ``admin`` and mined when this returns."""
    address = deploy(w3, "JobEscrow", admin, Web3.to_checksum_address(admin))
    contract = escrow(w3, address)
    sender: TxParams = {"from": Web3.to_checksum_address(admin)}
    for operator in operators:
        tx = contract.functions.grantRole(
            OPERATOR_ROLE, Web3.to_checksum_address(operator)
        ).transact(sender)
        w3.eth.wait_for_transaction_receipt(tx, timeout=120)
    if treasury is not None:
        tx = contract.functions.setTreasury(Web3.to_checksum_address(treasury)).transact(sender)
        w3.eth.wait_for_transaction_receipt(tx, timeout=120)
    return address

"""Test-only contracts (``contracts/test/``), compiled on demand with the project's solc and
settings (``bridge.chain.artifacts``) and deployed with web3: the hostile consumers of the
griefing tests, reused by the Python fault suite."""

from __future__ import annotations

import functools
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams

from bridge.chain.artifacts import REPO_ROOT, SETTINGS, _solc_binary

CONSUMERS = "contracts/test/utils/Consumers.sol"


@functools.cache
def compiled(name: str, source: str = CONSUMERS) -> tuple[list[dict[str, Any]], str]:
    """The ABI and bytecode of contract ``name`` in ``source`` (compiled once per session)."""
    import solcx

    output = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": {source: {"content": (REPO_ROOT / source).read_text()}},
            "settings": SETTINGS,
        },
        base_path=str(REPO_ROOT),
        allow_paths=[str(REPO_ROOT)],
        solc_binary=str(_solc_binary(REPO_ROOT)),
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    assert not errors, "\n".join(e["formattedMessage"] for e in errors)
    contract = output["contracts"][source][name]
    return contract["abi"], "0x" + contract["evm"]["bytecode"]["object"]


def deploy_test_contract(w3: Web3, name: str, sender: str, *args: Any) -> Contract:
    """Deploys test contract ``name`` from ``sender`` and returns it."""
    abi, bytecode = compiled(name)
    params: TxParams = {"from": Web3.to_checksum_address(sender)}
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact(params)
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    assert receipt["status"] == 1 and receipt["contractAddress"] is not None
    return w3.eth.contract(address=receipt["contractAddress"], abi=abi)

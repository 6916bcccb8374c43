"""The transaction manager's pure rules: fees, fee bumps, gas limits and send-error classes."""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from typing import cast

import pytest

from bridge.tx import policy
from bridge.tx.policy import (
    Fees,
    SendOutcome,
    batch_gas,
    bumped_fees,
    cap_reason,
    classify_send_error,
    gas_limit_for,
    initial_fees,
)

GWEI = 10**9


def test_initial_fees_are_twice_the_base_fee_plus_the_tip() -> None:
    assert initial_fees(10 * GWEI, 2 * GWEI, 500 * GWEI) == Fees(22 * GWEI, 2 * GWEI)


def test_initial_fees_respect_the_cap_and_keep_the_tip_below_it() -> None:
    assert initial_fees(400 * GWEI, 2 * GWEI, 500 * GWEI) == Fees(500 * GWEI, 2 * GWEI)
    assert initial_fees(0, 9 * GWEI, 5 * GWEI) == Fees(5 * GWEI, 5 * GWEI)


def test_bump_raises_both_fees_by_the_configured_percent() -> None:
    old = Fees(20 * GWEI, 2 * GWEI)
    market = Fees(10 * GWEI, GWEI)
    assert bumped_fees(old, market, 25, 500 * GWEI) == Fees(25 * GWEI, 25 * GWEI // 10)


def test_bump_is_at_least_the_ten_percent_nodes_require() -> None:
    old = Fees(100, 10)
    assert bumped_fees(old, Fees(0, 0), 1, 10**6) == Fees(110, 11)


def test_bump_follows_a_market_that_rose_faster() -> None:
    old = Fees(20 * GWEI, GWEI)
    market = Fees(80 * GWEI, 3 * GWEI)
    assert bumped_fees(old, market, 25, 500 * GWEI) == Fees(80 * GWEI, 3 * GWEI)


def test_bump_is_capped_and_refused_when_the_cap_leaves_no_room() -> None:
    assert bumped_fees(Fees(90, 10), Fees(0, 0), 25, 100) == Fees(100, 13)
    assert bumped_fees(Fees(95, 10), Fees(0, 0), 25, 100) is None
    assert bumped_fees(Fees(100, 100), Fees(0, 0), 25, 105) is None


def test_gas_limit_has_a_quarter_of_headroom_rounded_up() -> None:
    assert gas_limit_for(100_000) == 125_000
    assert gas_limit_for(30_393) == 37_992


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("already known", SendOutcome.ALREADY_KNOWN),  # geth
        ("Known transaction (0xabc)", SendOutcome.ALREADY_KNOWN),  # besu
        ("transaction already imported", SendOutcome.ALREADY_KNOWN),  # anvil
        ("AlreadyKnown", SendOutcome.ALREADY_KNOWN),  # nethermind
        ("nonce too low: next nonce 5, tx nonce 4", SendOutcome.NONCE_TOO_LOW),
        ("OldNonce, Current nonce: 5, nonce of rejected tx: 4", SendOutcome.NONCE_TOO_LOW),
        ("replacement transaction underpriced", SendOutcome.UNDERPRICED),
        ("transaction underpriced: tip needed 1, tip permitted 0", SendOutcome.UNDERPRICED),
        ("max fee per gas less than block base fee", SendOutcome.UNDERPRICED),  # anvil
        ("GAS_PRICE_BELOW_CURRENT_BASE_FEE", SendOutcome.UNDERPRICED),  # besu
        ("FeeCapTooLow: max fee per gas below base fee", SendOutcome.UNDERPRICED),
        ("insufficient funds for gas * price + value", SendOutcome.INSUFFICIENT_FUNDS),
        ("Insufficient funds for gas * price + value", SendOutcome.INSUFFICIENT_FUNDS),
        ("exceeds block gas limit", SendOutcome.RETRYABLE),
        ("connection reset", SendOutcome.RETRYABLE),
        ("", SendOutcome.RETRYABLE),
    ],
)
def test_send_errors_are_classified_by_the_node_message(message: str, outcome: SendOutcome) -> None:
    assert classify_send_error(message) is outcome


def test_policy_is_pure() -> None:
    tree = ast.parse(inspect.getsource(policy))
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections", "dataclasses", "enum", "typing"}


# ---------------------------------------------------------------------------- hostile requesters


@pytest.mark.parametrize(
    ("text", "limit"),
    [("a" * 1000, 256), ("é" * 300, 256), ("€" * 100, 256), ("x" * 256, 256), ("🙂" * 70, 256)],
)
def test_reasons_are_capped_at_a_utf8_boundary(text: str, limit: int) -> None:
    capped = cap_reason(text, limit)
    encoded = capped.encode("utf-8")
    assert len(encoded) <= limit
    if len(text.encode()) <= limit:
        assert capped == text
    else:
        assert capped.endswith("...") and text.startswith(capped[:-3])


@dataclass
class _U:
    job_id: int
    status: int
    data: str = ""


def test_batch_gas_gives_each_callback_item_its_whole_limit() -> None:
    plain = batch_gas([_U(1, 2, "remote-1")], {})
    with_callback = batch_gas([_U(1, 4, "https://x/1")], {1: 2_000_000})
    assert with_callback - plain >= 2_000_000 + 2_000_000 // 63
    # An Accepted item never calls back; a Cancelled one neither.
    assert batch_gas([_U(1, 2)], {1: 2_000_000}) < 200_000
    assert batch_gas([_U(1, 6)], {1: 2_000_000}) < 200_000
    many = batch_gas([_U(i, 4) for i in range(50)], {i: 1_000_000 for i in range(50)})
    assert many > 50 * 1_000_000


def _abi_calldata(items: list[tuple[int, int, bytes, str]]) -> bytes:
    """``applyUpdates(items)`` as web3 encodes it from the committed ABI."""
    from eth_typing import ABIFunction
    from eth_utils.abi import function_abi_to_4byte_selector
    from web3 import Web3

    from bridge.chain.artifacts import load_artifact

    abi = load_artifact("JobEscrow").abi
    escrow = Web3().eth.contract(abi=abi)
    fn = next(e for e in abi if e.get("name") == "applyUpdates")
    assert function_abi_to_4byte_selector(cast(ABIFunction, fn)) == policy.APPLY_UPDATES_SELECTOR
    return bytes.fromhex(escrow.encode_abi("applyUpdates", args=[items])[2:])


def test_apply_updates_calldata_is_the_abi_encoding_byte_for_byte() -> None:
    import random

    rng = random.Random(20261130)
    texts = ["", "x", "a" * 31, "b" * 32, "c" * 33, "remote-7f3a", "échec: ünïcode ✓", "z" * 300]
    for size in (0, 1, 2, 3, 17, 50):
        items = [
            (
                rng.choice([0, 1, 2**256 - 1, rng.getrandbits(64)]),
                rng.randrange(256),
                rng.randbytes(32),
                rng.choice(texts),
            )
            for _ in range(size)
        ]
        assert policy.apply_updates_calldata(items) == _abi_calldata(items)


@pytest.mark.parametrize(
    "item",
    [
        (-1, 1, b"\0" * 32, ""),
        (2**256, 1, b"\0" * 32, ""),
        (1, 256, b"\0" * 32, ""),
        (1, 1, b"\0", ""),
    ],
)
def test_apply_updates_calldata_refuses_what_the_abi_cannot_hold(
    item: tuple[int, int, bytes, str],
) -> None:
    with pytest.raises(ValueError):
        policy.apply_updates_calldata([item])

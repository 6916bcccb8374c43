"""The transaction manager's pure rules: fees, fee bumps, gas limits and send-error classes."""

from __future__ import annotations

import ast
import inspect

import pytest

from bridge.tx import policy
from bridge.tx.policy import (
    Fees,
    SendOutcome,
    bumped_fees,
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

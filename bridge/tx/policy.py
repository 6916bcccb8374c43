"""The transaction manager's pure decisions: fees, fee bumps, gas limits, send-error classes.

Nothing here does I/O, so each rule is unit-tested on its own and the manager
(``bridge.tx.manager``) only wires it to the node and the database.

Fees are EIP-1559: ``maxFeePerGas = 2 * baseFee + priorityFee`` (room for the base fee to rise
by 12.5% six blocks in a row), capped by the operator's ``max_fee_wei``. A replacement for the
same nonce must raise *both* fees by at least 10% or nodes reject it as underpriced.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Priority fee used when the node cannot suggest one.
DEFAULT_PRIORITY_FEE = 10**9
#: Nodes (geth's txpool ``PriceBump``) require a replacement to raise each fee by this much.
MIN_REPLACEMENT_BUMP_PERCENT = 10
#: Gas limit = estimate * GAS_LIMIT_NUM / GAS_LIMIT_DEN (25% headroom).
GAS_LIMIT_NUM, GAS_LIMIT_DEN = 5, 4


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees of one transaction attempt, in wei."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int


def initial_fees(base_fee: int, priority_fee: int, cap: int) -> Fees:
    """Fees for a new transaction.

    Args:
        base_fee: the latest block's base fee.
        priority_fee: the node's suggested tip.
        cap: the most the operator pays per gas.

    Returns:
        ``max_fee = min(2 * base_fee + priority_fee, cap)``, and the tip, no higher than that.
    """
    max_fee = min(2 * base_fee + priority_fee, cap)
    return Fees(max_fee, min(priority_fee, max_fee))


def _ceil_percent(value: int, percent: int) -> int:
    """``value * (100 + percent) / 100``, rounded up."""
    return -(-value * (100 + percent) // 100)


def bumped_fees(old: Fees, market: Fees, bump_percent: int, cap: int) -> Fees | None:
    """Fees for a replacement of a stuck transaction (same nonce).

    Each fee becomes the largest of: the old fee raised by ``bump_percent``, the old fee raised
    by the 10% nodes require, and today's market fee; the max fee is then capped at ``cap`` and
    the tip kept at most the max fee.

    Returns:
        The new fees, or None when the cap leaves no room for a 10% raise of both fees (a node
        would reject the replacement; the old transaction can only wait).
    """
    percent = max(bump_percent, MIN_REPLACEMENT_BUMP_PERCENT)
    need_max = _ceil_percent(old.max_fee_per_gas, MIN_REPLACEMENT_BUMP_PERCENT)
    need_tip = _ceil_percent(old.max_priority_fee_per_gas, MIN_REPLACEMENT_BUMP_PERCENT)
    max_fee = min(max(_ceil_percent(old.max_fee_per_gas, percent), market.max_fee_per_gas), cap)
    tip = min(
        max(_ceil_percent(old.max_priority_fee_per_gas, percent), market.max_priority_fee_per_gas),
        max_fee,
    )
    if max_fee < need_max or tip < need_tip:
        return None
    return Fees(max_fee, tip)


#: Longest reason (UTF-8 bytes) the bridge writes on-chain with ``Failed`` or ``Cancelled``.
MAX_REASON_BYTES = 256
_ELLIPSIS = "..."


def cap_reason(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes at a character boundary.

    A cut text ends in ``...`` (within the limit), so a reader sees it was shortened; text
    that fits is returned unchanged. Characters that cannot be encoded become U+FFFD first.
    """
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text if encoded.decode("utf-8") == text else encoded.decode("utf-8")
    room = max(0, limit - len(_ELLIPSIS))
    # Dropping a partial trailing character: decode with "ignore" drops only the cut bytes.
    return encoded[:room].decode("utf-8", "ignore") + _ELLIPSIS[: limit - room]


def gas_limit_for(estimate: int) -> int:
    """The gas limit for a transaction whose ``eth_estimateGas`` was ``estimate``: +25%."""
    return -(-estimate * GAS_LIMIT_NUM // GAS_LIMIT_DEN)


class SendOutcome(StrEnum):
    """What a node's answer to ``eth_sendRawTransaction`` means for the manager."""

    ACCEPTED = "accepted"  # no error
    ALREADY_KNOWN = "already_known"  # the node has it already: as good as accepted
    NONCE_TOO_LOW = "nonce_too_low"  # the nonce is used: by this tx (mined) or by another
    UNDERPRICED = "underpriced"  # outbid by a pending tx, or under the base fee: bump
    INSUFFICIENT_FUNDS = "insufficient_funds"  # the account cannot pay: alert, do not spin
    RETRYABLE = "retryable"  # anything else: keep the stored tx and send it again later


# Substrings (lowercase) of the messages geth, Erigon, Nethermind, Besu, reth and Anvil send.
_PATTERNS: tuple[tuple[SendOutcome, tuple[str, ...]], ...] = (
    (
        SendOutcome.ALREADY_KNOWN,
        (
            "already known",
            "known transaction",
            "alreadyknown",
            "transaction already imported",
            "already imported",
            "already in the mempool",
            "already exists",
        ),
    ),
    (
        SendOutcome.NONCE_TOO_LOW,
        ("nonce too low", "oldnonce", "nonce is too low", "nonce has already"),
    ),
    (
        SendOutcome.UNDERPRICED,
        (
            "replacement transaction underpriced",
            "replacement tx underpriced",
            "feetoolowtocompete",
            "replacement fee too low",
            "transaction underpriced",
            "underpriced",
            # The max fee is under the pending block's base fee (anvil, reth; besu's
            # GAS_PRICE_BELOW_CURRENT_BASE_FEE): the same bytes will be refused until the base
            # fee falls, so bump to the market like any other underpriced transaction.
            "less than block base fee",
            "below current base fee",
            "below_current_base_fee",
            "fee cap too low",
            "feecaptoolow",
        ),
    ),
    (
        SendOutcome.INSUFFICIENT_FUNDS,
        ("insufficient funds", "insufficientfunds", "insufficient balance", "not enough funds"),
    ),
)


def classify_send_error(message: str) -> SendOutcome:
    """Classifies a node's error message for ``eth_sendRawTransaction``.

    Args:
        message: the JSON-RPC error's ``message`` (any case).

    Returns:
        The outcome; ``RETRYABLE`` for any message not recognised.
    """
    text = message.lower()
    for outcome, needles in _PATTERNS:
        if any(needle in text for needle in needles):
            return outcome
    return SendOutcome.RETRYABLE

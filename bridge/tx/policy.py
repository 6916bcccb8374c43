"""The transaction manager's pure decisions: fees, fee bumps, gas limits, send-error classes.

Nothing here does I/O, so each rule is unit-tested on its own and the manager
(``bridge.tx.manager``) only wires it to the node and the database.

Fees are EIP-1559: ``maxFeePerGas = 2 * baseFee + priorityFee`` (room for the base fee to rise
by 12.5% six blocks in a row), capped by the operator's ``max_fee_wei``; the tip is a percentile
of recent blocks' priority fees (``eth_feeHistory``: ``tip_from_history``), capped by its own
ceiling. On a legacy chain (no ``baseFeePerGas`` in its blocks) one ``gasPrice`` is both fees
(``legacy_fees``). A replacement for the same nonce must raise *both* fees by at least 10% or
nodes reject it as underpriced. On an OP-stack chain a write also pays an L1 data fee, outside
the gas: ``write_cost`` adds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

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


def tip_from_history(
    rewards: Sequence[Sequence[int]], gas_used_ratios: Sequence[float], ceiling: int
) -> int | None:
    """The priority fee from ``eth_feeHistory`` asked for one percentile: the median over the
    blocks of that percentile's reward, capped at ``ceiling``.

    Blocks without transactions (gas used ratio 0) report a reward of 0 that says nothing about
    the market and are left out.

    Returns:
        The tip in wei, or None when no block had transactions (the caller falls back to the
        node's ``eth_maxPriorityFeePerGas``).
    """
    tips = sorted(
        int(reward[0])
        for reward, ratio in zip(rewards, gas_used_ratios, strict=False)
        if reward and ratio > 0
    )
    if not tips:
        return None
    middle = len(tips) // 2
    median = tips[middle] if len(tips) % 2 else (tips[middle - 1] + tips[middle]) // 2
    return min(median, ceiling)


def legacy_fees(gas_price: int, cap: int) -> Fees:
    """Fees for a legacy (type 0) transaction: the node's ``gasPrice``, capped; one price is
    both fields (the manager signs ``gasPrice = max_fee_per_gas``), so ``bumped_fees`` raises
    it like any other."""
    price = min(gas_price, cap)
    return Fees(price, price)


def write_cost(gas_limit: int, max_fee_per_gas: int, l1_fee: int = 0) -> int:
    """The most one write may cost the operator, in wei: its gas at the max fee, plus the L1
    data fee of an OP-stack chain (charged besides the gas; 0 elsewhere)."""
    return gas_limit * max_fee_per_gas + l1_fee


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


#: Gas of an ``applyUpdates`` transaction besides its items: the intrinsic 21,000, the loop, the
#: role check and the batch's events, with room to spare.
BATCH_BASE_GAS = 60_000
#: Gas of one item besides its data and callback, by the status it writes: what its costliest
#: case uses mined (cold reads of the job's slots, its status and terms writes, its event; a
#: refund credited to a requester whose credit slot is still empty; a free job's empty terms
#: slot written by its running mark), with room to spare. ``tests/integration/test_batch_gas.py``
#: runs each case on Anvil and sends it with the sized limit less ``BATCH_GAS_MARGIN_PERCENT``
#: (measured there, 12-item batches with long data, all in: ~14,500 an accept, ~32,800 a free
#: job's running mark, ~25,600 a completion, ~42,700 a cancel after an hour of five, ~42,200 a
#: failure). A tighter limit lets a batch into a fuller block (a node packs a transaction only
#: if its whole limit fits what the block has left) and asks less of the key's balance.
ITEM_GAS_BY_STATUS: Mapping[int, int] = {
    2: 25_000,  # Accepted
    3: 40_000,  # Running
    4: 35_000,  # Completed
    5: 50_000,  # Failed
    6: 50_000,  # Cancelled
}
#: An item that calls a consumer back (besides its callback's gas; the contract checks for its
#: settlement's 40,000 before the callback), or of any other status.
ITEM_GAS = 60_000
#: Gas per byte of calldata (a non-zero byte's price) and per byte of an item's ``data``.
GAS_PER_BYTE = 16
#: What the contract keeps back around a callback: EIP-150's 1/64 and its exact-gas check.
CALLBACK_CALL_GAS = 5_000
#: Statuses whose item calls the consumer back (when the job asked for a callback).
CALLBACK_STATUSES = frozenset({4, 5})  # Completed, Failed
#: Margin on the sized gas (percent).
BATCH_GAS_MARGIN_PERCENT = 10
#: Default most gas one batch is sized for (a quarter of a 60M block, half of a 30M one).
DEFAULT_MAX_BATCH_GAS = 15_000_000


class BatchItem(Protocol):
    """What sizing a batch needs of each update."""

    job_id: int
    status: int
    data: str


_Item = BatchItem


def batch_gas(items: Sequence[_Item], callback_limits: Mapping[int, int], calldata: int = 0) -> int:
    """The gas limit for an ``applyUpdates`` of ``items``, from what they may spend mined, not
    from a simulation (where a consumer can behave differently).

    Each item gets its status's ``ITEM_GAS_BY_STATUS`` (``ITEM_GAS`` for another) plus
    ``GAS_PER_BYTE`` per byte of its data. An item whose status calls the consumer back gets
    ``ITEM_GAS`` in place of its status's figure, plus the job's whole callback limit, its 1/64
    and ``CALLBACK_CALL_GAS`` (what the contract checks before it runs the item). On top:
    ``BATCH_BASE_GAS``, the calldata (``calldata`` bytes, or an estimate from the items) and
    ``BATCH_GAS_MARGIN_PERCENT``.

    Args:
        items: the updates (``job_id``, ``status``, ``data``).
        callback_limits: each job's callback gas limit (missing or 0: no callback).
        calldata: the encoded transaction data's length in bytes, if known.
    """
    sizer = GasSizer(callback_limits)
    for item in items:
        sizer.add(item)
    return sizer.gas(calldata)


class GasSizer:
    """``batch_gas`` of a batch built one update at a time: ``gas_with`` says what the batch
    would need with one more, without going over the batch again."""

    def __init__(self, callback_limits: Mapping[int, int]) -> None:
        self._limits = callback_limits
        self._total = BATCH_BASE_GAS
        self._data_bytes = 0

    def _cost(self, item: _Item) -> tuple[int, int]:
        """The item's gas (all but its calldata) and its ABI-encoded bytes."""
        size = len(item.data.encode("utf-8", "replace"))
        limit = self._limits.get(item.job_id, 0)
        if limit > 0 and item.status in CALLBACK_STATUSES:
            # Before a callback item the contract checks for its settlement's reserve (40,000)
            # on top of the callback's gas, and skips the item without it: the full ITEM_GAS.
            gas = ITEM_GAS + limit + limit // 63 + CALLBACK_CALL_GAS
        else:
            gas = ITEM_GAS_BY_STATUS.get(item.status, ITEM_GAS)
        return gas + GAS_PER_BYTE * size, size + 160  # the item's head and offsets, ABI-encoded

    def add(self, item: _Item) -> None:
        """Counts ``item`` in the batch."""
        gas, data_bytes = self._cost(item)
        self._total += gas
        self._data_bytes += data_bytes

    def gas(self, calldata: int = 0) -> int:
        """The batch's gas limit (``calldata``: the encoded data's length, if known)."""
        total = self._total + GAS_PER_BYTE * (calldata or self._data_bytes)
        return -(-total * (100 + BATCH_GAS_MARGIN_PERCENT) // 100)

    def gas_with(self, item: _Item) -> int:
        """The batch's gas limit with ``item`` added (estimated calldata)."""
        gas, data_bytes = self._cost(item)
        total = self._total + gas + GAS_PER_BYTE * (self._data_bytes + data_bytes)
        return -(-total * (100 + BATCH_GAS_MARGIN_PERCENT) // 100)


#: ``applyUpdates((uint256,uint8,bytes32,string)[])``'s selector (checked against the ABI in
#: ``tests/unit/test_tx_policy.py``).
APPLY_UPDATES_SELECTOR = bytes.fromhex("95b9c8b6")
_WORD = 32


def _word(value: int) -> bytes:
    return value.to_bytes(_WORD, "big")


def apply_updates_calldata(items: Sequence[tuple[int, int, bytes, str]]) -> bytes:
    """The transaction data of ``applyUpdates(items)``: its selector and the ABI encoding of
    the array of ``(jobId, status, resultHash, data)`` tuples, byte for byte what eth_abi
    (web3's ``encode_abi``) writes, at a fraction of its cost (it runs for every batch).

    Raises:
        ValueError: a job id or status out of its type's range, or a result hash that is not
            32 bytes.
    """
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = _WORD * len(items)  # the tuples start after one offset word each
    for job_id, status, result_hash, data in items:
        if not 0 <= job_id < 2**256 or not 0 <= status < 2**8 or len(result_hash) != _WORD:
            raise ValueError(f"update of job {job_id} cannot be encoded")
        text = data.encode("utf-8")
        padded = text + b"\0" * (-len(text) % _WORD)
        tail = b"".join(
            (_word(job_id), _word(status), result_hash, _word(4 * _WORD), _word(len(text)), padded)
        )
        heads.append(_word(offset))
        tails.append(tail)
        offset += len(tail)
    return b"".join((APPLY_UPDATES_SELECTOR, _word(_WORD), _word(len(items)), *heads, *tails))


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

"""What to do next with one stored transaction, and with the queue (pure; after Chainlink's
txmgr, whose Confirmer and Broadcaster ask the same questions).

The manager (``bridge.tx.manager``) gathers the facts (the receipt, the chain's nonce, the
clock) and does what these functions answer; each answer carries its reason. Nothing here does
I/O, so every branch is unit-tested on its own (``tests/unit/test_tx_plan.py``).

For one unconfirmed transaction, in the order the manager asks:

1. it has a receipt: ``plan_mined`` → wait for confirmations, check the block is still
   canonical, re-send it (reorged out), confirm it, or split it (reverted on-chain);
2. no receipt: ``plan_unmined`` → re-send it (its receipt is gone: reorged out), fail it (its
   nonce was used by another transaction), or go on to
3. ``plan_send`` (once its held or dropped updates are dealt with) → bump its fees (a node
   called it underpriced, or it is stuck), send its stored bytes (not accepted in this run
   yet), or wait.

For new transactions: ``may_open_batch`` (room in flight, no simulation back-off),
``within_gas`` (the longest prefix of a batch within the gas ceiling) and ``batch_ready`` (a
partial batch waits for ``batch_wait``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from bridge.tx.policy import BatchItem, GasSizer


class TxAction(StrEnum):
    """The next step for one stored transaction."""

    WAIT = "wait"  # nothing this round
    CHECK_CANONICAL = "check_canonical"  # deep enough: is its block still on the chain?
    RESEND_REORGED = "resend_reorged"  # forget where it was mined; send its bytes again
    CONFIRM = "confirm"  # mark it confirmed, its updates applied or skipped
    SPLIT_REVERTED = "split_reverted"  # reverted on-chain: never send the same set again
    NONCE_USED = "nonce_used"  # its nonce is used and no receipt of ours: fatal (look once more)
    PREPARE = "prepare"  # not mined: deal with held/dropped updates, then ``plan_send``
    BUMP = "bump"  # replace it (same nonce) with higher fees
    SEND = "send"  # send its stored bytes


@dataclass(frozen=True)
class TxPlan:
    """A step and why."""

    action: TxAction
    reason: str


def plan_mined(
    *,
    head: int,
    mined_block: int,
    confirmations: int,
    succeeded: bool,
    canonical: bool | None = None,
) -> TxPlan:
    """The step for a transaction with a receipt in ``mined_block``.

    Args:
        head: the chain's latest block.
        confirmations: blocks on top of its block before it counts.
        succeeded: the receipt's status was 1.
        canonical: whether its block is still the chain's block at that height; None when not
            asked yet (the answer is ``CHECK_CANONICAL`` once deep enough).
    """
    depth = head - mined_block
    if depth < confirmations:
        return TxPlan(TxAction.WAIT, f"{depth} of {confirmations} confirmations")
    if canonical is None:
        return TxPlan(TxAction.CHECK_CANONICAL, "deep enough: is its block still canonical?")
    if not canonical:
        return TxPlan(TxAction.RESEND_REORGED, "its block is no longer canonical")
    if succeeded:
        return TxPlan(TxAction.CONFIRM, f"{depth} confirmations")
    return TxPlan(TxAction.SPLIT_REVERTED, "reverted on-chain")


def plan_unmined(*, was_mined: bool, nonce: int, chain_nonce: int) -> TxPlan:
    """The step for a transaction with no receipt now.

    Args:
        was_mined: a receipt was recorded before (so a reorg took it out).
        nonce: its nonce.
        chain_nonce: the key's transaction count at ``latest``.
    """
    if was_mined:
        return TxPlan(TxAction.RESEND_REORGED, "its receipt is gone")
    if nonce < chain_nonce:
        return TxPlan(TxAction.NONCE_USED, f"nonce {nonce} is used (the chain is at {chain_nonce})")
    return TxPlan(TxAction.PREPARE, "not mined yet")


def is_stuck(broadcast_at: float | None, now: float, stuck_after: float) -> bool:
    """Whether a transaction broadcast at ``broadcast_at`` has waited ``stuck_after`` s."""
    return broadcast_at is not None and now - broadcast_at >= stuck_after


def plan_send(
    *,
    bump_requested: bool,
    sent_this_run: bool,
    broadcast_at: float | None,
    now: float,
    stuck_after: float,
) -> TxPlan:
    """The step for a sendable, unmined transaction.

    Args:
        bump_requested: a node called its fees underpriced.
        sent_this_run: a node accepted its current bytes in this process's lifetime (after a
            restart every stored transaction is sent again).
        broadcast_at: when it was first accepted, if ever.
        now, stuck_after: the clock, and the wait before a transaction counts as stuck.
    """
    if bump_requested:
        return TxPlan(TxAction.BUMP, "a node called it underpriced")
    if not sent_this_run:
        return TxPlan(TxAction.SEND, "not accepted by the node in this run")
    if is_stuck(broadcast_at, now, stuck_after):
        return TxPlan(TxAction.BUMP, f"no receipt {stuck_after:.0f}s after its broadcast")
    return TxPlan(TxAction.WAIT, "in the mempool")


def may_open_batch(
    *, unconfirmed: int, max_inflight: int, now: float, simulate_after: float
) -> bool:
    """Whether a new transaction may be opened: fewer than ``max_inflight`` in flight
    (``unconfirmed``: the manager counts those not mined yet), and no back-off after a
    simulation that reverted."""
    return unconfirmed < max_inflight and now >= simulate_after


def may_fund(*, balance: int, committed: int, cost: int, unmined: int, bump_percent: int) -> bool:
    """Whether a new transaction whose worst case is ``cost`` wei may join ``unmined`` ones
    sent and not mined, whose worst cases sum to ``committed``: when ``balance`` pays them all
    and one fee bump of each (``bump_percent``). A node's pool holds a key's transactions only
    while the key can pay every one at its gas limit and max fee (geth refuses an overdraft),
    so a batch beyond that would be refused, and a replacement of a stuck one with higher
    fees too. With none in flight it may always go: the node's answer then tells a key that
    cannot pay even one (``InsufficientFunds``)."""
    if unmined == 0:
        return True
    return (committed + cost) * (100 + bump_percent) <= balance * 100


_U = TypeVar("_U", bound=BatchItem)


def within_gas(batch: Sequence[_U], limits: Mapping[int, int], max_batch_gas: int) -> list[_U]:
    """The longest prefix of ``batch`` whose sized gas (``batch_gas``) fits ``max_batch_gas``
    (at least one update: one alone always goes)."""
    kept: list[_U] = []
    sizer = GasSizer(limits)
    for u in batch:
        if kept and sizer.gas_with(u) > max_batch_gas:
            break
        sizer.add(u)
        kept.append(u)
    return kept


def batch_ready(
    *,
    size: int,
    batch_size: int,
    batch_wait: float,
    oldest_age: float,
    split: bool,
) -> bool:
    """Whether a batch of ``size`` updates goes now: a half of a reverted set always does; a
    full one, or any with no ``batch_wait``, does; a partial one once its oldest update has
    waited ``batch_wait`` seconds."""
    if split or size == 0 or batch_wait <= 0 or size >= batch_size:
        return True
    return oldest_age >= batch_wait

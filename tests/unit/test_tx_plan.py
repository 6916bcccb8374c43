"""The transaction plan: every branch of "what next with this transaction" (no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from bridge.tx import plan
from bridge.tx.plan import TxAction


@pytest.mark.parametrize(
    ("head", "mined", "confirmations", "succeeded", "canonical", "expected"),
    [
        (10, 10, 2, True, None, TxAction.WAIT),
        (11, 10, 2, True, None, TxAction.WAIT),
        (12, 10, 2, True, None, TxAction.CHECK_CANONICAL),
        (12, 10, 2, True, False, TxAction.RESEND_REORGED),
        (12, 10, 2, False, False, TxAction.RESEND_REORGED),
        (12, 10, 2, True, True, TxAction.CONFIRM),
        (12, 10, 2, False, True, TxAction.SPLIT_REVERTED),
        (10, 10, 0, True, True, TxAction.CONFIRM),
    ],
)
def test_plan_mined(
    head: int,
    mined: int,
    confirmations: int,
    succeeded: bool,
    canonical: bool | None,
    expected: TxAction,
) -> None:
    step = plan.plan_mined(
        head=head,
        mined_block=mined,
        confirmations=confirmations,
        succeeded=succeeded,
        canonical=canonical,
    )
    assert step.action is expected
    assert step.reason


@pytest.mark.parametrize(
    ("was_mined", "nonce", "chain_nonce", "expected"),
    [
        (True, 5, 9, TxAction.RESEND_REORGED),
        (False, 5, 9, TxAction.NONCE_USED),
        (False, 5, 5, TxAction.PREPARE),
        (False, 5, 4, TxAction.PREPARE),
    ],
)
def test_plan_unmined(was_mined: bool, nonce: int, chain_nonce: int, expected: TxAction) -> None:
    assert (
        plan.plan_unmined(was_mined=was_mined, nonce=nonce, chain_nonce=chain_nonce).action
        is expected
    )


@pytest.mark.parametrize(
    ("bump", "sent", "broadcast_at", "now", "expected"),
    [
        (True, True, 0.0, 1.0, TxAction.BUMP),
        (True, False, None, 1.0, TxAction.BUMP),
        (False, False, 0.0, 1.0, TxAction.SEND),
        (False, True, 0.0, 29.9, TxAction.WAIT),
        (False, True, 0.0, 30.0, TxAction.BUMP),
        (False, True, None, 100.0, TxAction.WAIT),
    ],
)
def test_plan_send(
    bump: bool, sent: bool, broadcast_at: float | None, now: float, expected: TxAction
) -> None:
    step = plan.plan_send(
        bump_requested=bump,
        sent_this_run=sent,
        broadcast_at=broadcast_at,
        now=now,
        stuck_after=30.0,
    )
    assert step.action is expected


def test_may_open_batch() -> None:
    assert plan.may_open_batch(unconfirmed=3, max_inflight=4, now=5.0, simulate_after=5.0)
    assert not plan.may_open_batch(unconfirmed=4, max_inflight=4, now=5.0, simulate_after=0.0)
    assert not plan.may_open_batch(unconfirmed=0, max_inflight=4, now=4.9, simulate_after=5.0)


@dataclass
class Item:
    job_id: int
    status: int
    data: str = ""


def test_within_gas_keeps_the_longest_prefix_and_always_one() -> None:
    # Completed (4) calls the consumer back: each such item carries its job's callback limit.
    items = [Item(1, 4), Item(2, 4), Item(3, 4)]
    limits = {1: 1_000_000, 2: 1_000_000, 3: 1_000_000}
    everything = plan.within_gas(items, limits, 10**9)
    assert everything == items
    one = plan.within_gas(items, limits, 1)
    assert one == items[:1]
    two_gas = plan.within_gas(items[:2], limits, 10**9)
    assert len(plan.within_gas(items, limits, 0)) == 1
    from bridge.tx.policy import batch_gas

    assert plan.within_gas(items, limits, batch_gas(two_gas, limits)) == items[:2]


def test_within_gas_is_the_longest_prefix_batch_gas_allows() -> None:
    """The running sizer agrees with ``batch_gas`` of each prefix (as it was computed before:
    the whole prefix again for every update), for data of any width and every status."""
    from bridge.tx.policy import batch_gas

    rng = random.Random(7)
    for _ in range(300):
        items = [
            Item(rng.randrange(1, 6), rng.randrange(0, 9), "é☃x" * rng.randrange(0, 40))
            for _ in range(rng.randrange(1, 30))
        ]
        limits = {j: rng.choice([0, 50_000, 2_000_000]) for j in range(1, 6)}
        cap = rng.randrange(0, batch_gas(items, limits) + 100_000)
        longest = 1
        while longest < len(items) and batch_gas(items[: longest + 1], limits) <= cap:
            longest += 1
        assert plan.within_gas(items, limits, cap) == items[:longest]


@pytest.mark.parametrize(
    ("size", "age", "split", "ready"),
    [
        (0, 0.0, False, True),
        (4, 0.0, False, True),  # full
        (3, 4.9, False, False),  # partial and young
        (3, 5.0, False, True),  # partial and old enough
        (1, 0.0, True, True),  # a reverted set's half goes at once
    ],
)
def test_batch_ready(size: int, age: float, split: bool, ready: bool) -> None:
    assert (
        plan.batch_ready(size=size, batch_size=4, batch_wait=5.0, oldest_age=age, split=split)
        is ready
    )
    assert plan.batch_ready(size=size, batch_size=4, batch_wait=0.0, oldest_age=age, split=split)


def test_may_fund_counts_every_unmined_transaction_at_its_worst_case() -> None:
    # Nothing in flight: the node's answer decides (a key that cannot pay one is an error).
    assert plan.may_fund(balance=0, committed=0, cost=10, unmined=0, bump_percent=25)
    # All of them, and a 25% fee bump of each: 30 * 1.25 = 37.5.
    assert plan.may_fund(balance=38, committed=20, cost=10, unmined=2, bump_percent=25)
    assert not plan.may_fund(balance=37, committed=20, cost=10, unmined=2, bump_percent=25)

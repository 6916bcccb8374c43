"""``BRIDGE_MAX_INFLIGHT`` reaches the writer: a key never has more transactions sent and not yet
mined than it allows, against a real Anvil mining a block a second."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.store.models import ChainTx, TxState
from tests.faults.harness import bridge_round, wait_for
from tests.integration.test_hostile_jobs import _status, _submit


def _unmined(bridge: Bridge) -> int:
    with Session(bridge.db) as session:
        query = (
            select(func.count())
            .select_from(ChainTx)
            .where(col(ChainTx.state) == TxState.UNCONFIRMED, col(ChainTx.mined_block).is_(None))
        )
        return int(session.exec(query).one())


def test_the_settings_cap_on_transactions_in_flight_holds_end_to_end(tmp_path: Path) -> None:
    # One update a batch, sent at once: three jobs' accepts are queued together, so only the
    # cap keeps the writer from sending three transactions before the next block (with the
    # default cap of 4, this test saw 4 unmined at once).
    settings = {"max_inflight": 1, "batch_size": 1, "batch_wait": 0.0}
    with LocalStack(
        tmp_path, block_time=1.0, confirmations=0, start_bridge=False, settings=settings
    ) as stack:
        bridge = Bridge.from_settings(stack.settings)
        try:
            assert bridge.tx.max_inflight == 1
            jobs = [_submit(stack, f"echo {i} > output/out.txt") for i in range(3)]
            seen: list[int] = []

            def one_round() -> None:
                bridge_round(bridge)
                seen.append(_unmined(bridge))

            def completed() -> bool:
                return all(_status(stack, job) is Status.COMPLETED for job in jobs)

            wait_for(completed, 120, "the three jobs to complete", interval=0.05, between=one_round)
            assert max(seen) == 1, seen  # the cap held, and was reached
            with Session(bridge.db) as session:
                sent = session.exec(select(func.count()).select_from(ChainTx)).one()
            assert sent >= 3  # one update a transaction: several transactions, one at a time
        finally:
            bridge.stop()

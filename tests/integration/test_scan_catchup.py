"""The scanner catches up back to back: a backlog of confirmed blocks is read round after round,
each round starting as soon as the one before it ends, not one range per
``BRIDGE_SCAN_INTERVAL``.

The bridge starts with a scan interval of ten minutes, ranges of at most two blocks, and twelve
blocks of submissions to read: one range per interval would need an hour.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from bridge.devstack import LocalStack
from bridge.store.models import Job
from bridge.waiting import wait_until
from tests.builders import submit_job

JOBS = 12
#: Long enough that a test passing within its timeouts cannot have waited one interval.
SCAN_INTERVAL = 600.0


def test_a_backlog_is_read_without_waiting_the_scan_interval(tmp_path: Path) -> None:
    with LocalStack(
        tmp_path,
        block_time=None,  # a block per transaction: one submission a block
        confirmations=0,
        start_bridge=False,
        serve_api=False,
        settings={"max_block_range": 2, "scan_interval": SCAN_INTERVAL},
    ) as stack:
        user = stack.w3.to_checksum_address(stack.roles.user)
        ids = [submit_job(stack.w3, stack.escrow, user)[0] for _ in range(JOBS)]
        head = int(stack.w3.eth.block_number)
        bridge = stack.start_bridge()

        wait_until(lambda: bridge.scanner.cursor() >= head, 120, what="the scan to reach the head")
        with Session(bridge.db) as session:
            assert sorted(j.job_id for j in session.exec(select(Job)).all()) == ids

"""``BRIDGE_CE_CONCURRENCY`` reaches the worker: the bridge never has more CE calls open at once
than it allows, against the CE emulator answering every call after 0.2 s (a far server) and a
real Anvil."""

from __future__ import annotations

from pathlib import Path

from bridge.chain.spec import Status
from bridge.engine.service import Bridge
from tests.faults.harness import bridge_round, wait_for
from tests.integration.test_hostile_jobs import _instant_stack, _status, _submit


def test_the_ce_concurrency_setting_bounds_the_calls_in_flight(tmp_path: Path) -> None:
    # Six jobs due in one round: with the default (32) all six job-creates go out together
    # (this test saw 6 in flight at the emulator); allowed 2, two at a time, and both used.
    with _instant_stack(
        tmp_path, answer_delay=0.2, start_bridge=False, settings={"ce_concurrency": 2}
    ) as stack:
        bridge = Bridge.from_settings(stack.settings)
        try:
            jobs = [_submit(stack, f"echo {i} > output/out.txt") for i in range(6)]
            wait_for(
                lambda: all(_status(stack, job) is Status.COMPLETED for job in jobs),
                120,
                "the six jobs to complete",
                interval=0.05,
                between=lambda: bridge_round(bridge),
            )
            assert stack.emulator is not None
            assert stack.emulator.emulator.stats()["max_in_flight"] == 2
        finally:
            bridge.stop()

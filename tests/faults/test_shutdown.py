"""Shutdown: SIGTERM stops ``ce-bridge run`` within a bounded time and leaves it resumable.

The bridge runs as a subprocess while CE is slow: a third of the emulator's answers hang for
30 s, past the bridge's 4 s client timeout, so SIGTERM usually arrives with calls in flight and
retries pending. Each SIGTERM is timed from the signal to the process's exit; 15 s is a
liveness bound (a stop that waits for every retry of every queued job would take minutes), not
a speed target. After each stop the bridge is started again on the same database, and at the
end every job is terminal with exactly one remote job each (``harness.audit``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from bridge.devstack import LocalStack
from tests.faults.harness import (
    BridgeProcess,
    RunStart,
    Workload,
    audit,
    emulator_config,
    fault_seed,
    mixed_emulator,
    mixed_kinds,
    wait_for,
    writes_settled,
)

STOP_BOUND = 15.0
STOPS = 3


def test_sigterm_stops_the_bridge_in_bounded_time_and_it_resumes(
    tmp_path: Path, fault_db_url: str
) -> None:
    seed = fault_seed("shutdown")
    rng = random.Random(seed)
    db_url = fault_db_url
    config = mixed_emulator(
        timeout_rate=0.33,
        timeout_seconds=30.0,
        seed=seed,
    )
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        database_url=db_url,
        emulator_config=config,
        start_bridge=False,
        settings={"ce_timeout": 4.0},
    ) as stack:
        start = RunStart.of(stack)
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        work = Workload(stack)
        stops: list[tuple[float, int]] = []
        try:
            for _ in range(STOPS):
                bridge.start()
                # Start-up checks CE too, and a third of CE's answers hang past the client's
                # timeout: a start may retry a few times with back-off (1, 2, 4, 8 ... s).
                wait_for(bridge.started, 120, "the bridge to start")
                work.submit(mixed_kinds(16, rng))
                up = time.monotonic()
                # Let it get into the middle of things: random uptime, cancellations sent.
                uptime = rng.uniform(2.0, 6.0)
                while time.monotonic() - up < uptime:
                    work.send_due_cancellations()
                    time.sleep(0.1)
                stops.append(bridge.terminate(timeout=120))
            # Resume on the same database; let CE behave so the run can finish.
            emulator_config(stack, timeout_rate=0.0)
            bridge.start()
            converge = work.converge(180)
            wait_for(lambda: writes_settled(db_url), 60, "the last writes to be confirmed")
            stops.append(bridge.terminate(timeout=120))
        except BaseException:
            print(bridge.tail())
            raise
        finally:
            bridge.close()
        print(f"shutdown: SIGTERM to exit {[(round(s, 1), c) for s, c in stops]} (s, exit code)")
        report = audit(stack, work.jobs, database_url=db_url, start=start)
        print(f"shutdown: seed {seed}; converged {converge:.0f} s after the last restart")
        print(f"shutdown: {report.line()}")
        assert all(code == 0 for _, code in stops), stops
        assert max(s for s, _ in stops) <= STOP_BOUND, stops

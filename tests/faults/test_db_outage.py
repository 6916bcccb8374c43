"""A lost PostgreSQL database: the bridge logs one line per back-off, not a traceback per round,
and carries on by itself when the database is back.

``ce-bridge run`` runs as a subprocess on a PostgreSQL database of its own. The outage is the
server refusing the database (``ALLOW_CONNECTIONS false``) with every open connection ended, the
bridge's lock connection included. A job is submitted during the outage. The log of the outage
is read once the scanner has backed off four times (1, 2, 4 and 8 s): every loop may have logged
about as many lines as it had back-offs, and none a traceback. Then the database comes back and
the job submitted meanwhile must complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig
from tests.faults.harness import (
    BridgeProcess,
    Workload,
    wait_for,
    writes_settled_and_logged,
)
from tests.pg import pg_admin, postgres_database

LOOPS = ("ce-scan", "ce-work", "ce-tx")


def test_a_lost_database_costs_a_line_per_backoff_and_the_bridge_recovers(tmp_path: Path) -> None:
    config = EmulatorConfig(provisioning_seconds=0.2, downloading_seconds=0.2, running_seconds=0.5)
    with (
        postgres_database("ce_bridge_outage") as url,
        LocalStack(
            tmp_path,
            block_time=0.5,
            confirmations=1,
            database_url=url,
            emulator_config=config,
            start_bridge=False,
        ) as stack,
    ):
        name = url.rsplit("/", 1)[1]
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        work = Workload(stack)
        try:
            bridge.start()
            (before,) = work.submit(["ok"])
            wait_for(lambda: work.status(before.job_id) is Status.COMPLETED, 90, "a first job")
            # The completion's confirmation is logged after the job reads Completed: the outage's
            # log starts once every write of the first job is settled and logged.
            wait_for(
                lambda: writes_settled_and_logged(url, bridge.log_path),
                60,
                "the first job's writes to be confirmed and logged",
            )

            offset = len(bridge.log_path.read_bytes())
            pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            pg_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()",
                name=name,
            )

            def outage_log() -> list[str]:
                text = bridge.log_path.read_bytes()[offset:].decode(errors="replace")
                return text.splitlines()

            (during,) = work.submit(["ok"])
            wait_for(
                lambda: any(
                    "ce-scan: database unavailable" in line and "retrying in 8 s" in line
                    for line in outage_log()
                ),
                90,
                "the scanner's fourth back-off",
            )
            lines = outage_log()
            assert bridge.running
            assert not any("Traceback" in line for line in lines), "\n".join(lines)
            per_loop = {
                loop: sum(1 for line in lines if f"{loop}: database unavailable" in line)
                for loop in LOOPS
            }
            # Back-offs of 1, 2, 4, 8 (and perhaps 16) s: about five lines a loop, where a
            # traceback per round was ~60 lines every quarter second.
            assert all(1 <= n <= 6 for n in per_loop.values()), per_loop
            delays = [
                int(m.group(1))
                for line in lines
                if "ce-scan: database unavailable" in line
                and (m := re.search(r"retrying in (\d+) s", line))
            ]
            assert delays[:4] == [1, 2, 4, 8], delays
            others = [line for line in lines if not any(f"{x}:" in line for x in LOOPS)]
            assert len(others) <= 3, others  # e.g. "the connection holding the lock was lost"
            assert len(lines) <= sum(per_loop.values()) + 3
            assert work.status(during.job_id) is Status.SUBMITTED

            pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            wait_for(
                lambda: work.status(during.job_id) is Status.COMPLETED,
                120,
                "the job submitted during the outage to complete",
            )
            recovered = outage_log()
            for loop in LOOPS:
                assert any(f"{loop}: working again" in line for line in recovered), loop
            assert bridge.running
            assert not any("Traceback" in line for line in recovered)
        finally:
            pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            bridge.close()

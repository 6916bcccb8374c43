"""Scale-out under faults: three ``ce-bridge run`` processes with three operator keys on one
PostgreSQL database and one contract, 300 mixed jobs, 20 SIGKILLs, one process gone for good.

Each process signs with its own key (all three hold ``OPERATOR_ROLE``) and serves its own API;
they share the database and the output file store. Jobs are submitted in waves while a seeded
schedule SIGKILLs a random live process (never two at once; the victim is restarted after a
random pause); every fourth time it is the scanner's leader (found in ``pg_locks``), killed
once its standbys are up, and the failover time (SIGKILL to a standby holding the scanner's
lock) is measured and printed. Halfway,
one victim is not restarted: its leases expire and its jobs are finished by the others; its
signed transactions are finished by the others too (their stored bytes need no key).

At the end every job is terminal as its kind calls for, the emulator made one remote job per
``Idempotency-Key``, no write or payout is doubled, each key's nonces have no gap, and
``harness.audit`` passes. Replay a failure with the printed ``CE_FAULT_SEED``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from web3 import Web3

from bridge.chain.deploy import OPERATOR_ROLE
from bridge.devchain import anvil_key, free_port
from bridge.devstack import LocalStack
from bridge.store.locks import advisory_key, scanner_label
from tests.faults.harness import (
    BridgeProcess,
    RunStart,
    Workload,
    audit,
    fault_seed,
    mixed_emulator,
    mixed_kinds,
    wait_for,
    writes_settled,
)
from tests.pg import pg_admin, postgres_database

JOBS = 300
WAVES = 12
KILLS = 20
FOR_GOOD_AT = 9  # the index of the kill whose victim is never restarted
UPTIME = (0.5, 3.0)  # seconds between two kills
DOWNTIME = (0.0, 1.5)  # seconds a victim stays dead before its restart
LEASE = 5.0  # BRIDGE_CLAIM_LEASE: a dead process's jobs wait this long
SCAN_INTERVAL = 0.5
KEYS = (anvil_key(1), anvil_key(5), anvil_key(6))


def _leader_pid(database: str, key: int) -> int | None:
    """The OS pid of the process holding the scanner's lock (its ``application_name``)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    rows = pg_admin(
        "SELECT a.application_name FROM pg_locks l "
        "JOIN pg_database d ON d.oid = l.database "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = :name "
        "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1",
        name=database,
        hi=unsigned >> 32,
        lo=unsigned & 0xFFFF_FFFF,
    )
    if not rows:
        return None
    name = str(rows[0][0])  # "ce-bridge scanner pid <pid>"
    return int(name.rsplit(" ", 1)[1])


def test_three_processes_with_three_keys_survive_sigkills_and_a_lost_member(
    tmp_path: Path,
) -> None:
    seed = fault_seed("scale")
    rng = random.Random(seed)
    with (
        postgres_database("ce_bridge_scale") as db_url,
        LocalStack(
            tmp_path,
            block_time=1.0,
            confirmations=1,
            database_url=db_url,
            emulator_config=mixed_emulator(),
            start_bridge=False,
            settings={
                "batch_size": 50,
                "tx_stuck_after": 10.0,
                "claim_lease": LEASE,
                "scan_interval": SCAN_INTERVAL,
            },
        ) as stack,
    ):
        database = db_url.rsplit("/", 1)[1]
        w3, escrow = stack.w3, stack.escrow
        operators = [Web3.to_checksum_address(w3.eth.account.from_key(k).address) for k in KEYS]
        for operator in operators[1:]:
            grant = escrow.functions.grantRole(OPERATOR_ROLE, operator).transact(
                {"from": stack.roles.admin}
            )
            assert w3.eth.wait_for_transaction_receipt(grant, timeout=60)["status"] == 1
        start = RunStart.of(stack, operators)
        scanner_key = advisory_key(scanner_label(int(w3.eth.chain_id), escrow.address))
        procs = [
            BridgeProcess(
                stack.settings,
                tmp_path / f"bridge-{i}.log",
                operator_key=key,
                api_port=free_port(),
            )
            for i, key in enumerate(KEYS)
        ]
        work = Workload(stack)
        kinds = mixed_kinds(JOBS, rng)
        waves = [kinds[i::WAVES] for i in range(WAVES)]
        failovers: list[float] = []
        victims: list[str] = []
        gone: BridgeProcess | None = None
        started = time.monotonic()

        def live() -> list[BridgeProcess]:
            return [p for p in procs if p.running]

        def leader() -> BridgeProcess | None:
            pid = _leader_pid(database, scanner_key)
            return next((p for p in live() if p.pid == pid), None)

        def ready(p: BridgeProcess) -> bool:
            """Whether ``p`` finished its start-up (its n-th "bridge running" line)."""
            text = p.log_path.read_text(errors="replace")
            return p.running and "bridge running for" in text.rsplit("===== start", 1)[-1]

        def pause(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                work.send_due_cancellations()
                time.sleep(0.1)

        try:
            for p in procs:
                p.start()
            wait_for(lambda: leader() is not None, 90, "a scanner leader")
            for kill in range(KILLS):
                if waves:
                    work.submit(waves.pop(0))
                pause(rng.uniform(*UPTIME))
                wait_for(lambda: leader() is not None, 60, "a scanner leader", interval=0.05)
                current = leader()
                measured = kill % 4 == 0 and current is not None
                victim = current if measured and current else rng.choice(live())
                if measured:
                    # A failover needs a standby: the others must be up, not still starting.
                    wait_for(lambda: all(ready(p) for p in live()), 60, "the standbys to be up")
                    current = leader()
                    victim = current or victim
                was_leader = victim is current
                victim.kill()
                killed_at = time.monotonic()
                victims.append(f"{procs.index(victim)}{'L' if was_leader else ''}")
                if was_leader and measured:
                    wait_for(
                        lambda: _leader_pid(database, scanner_key) is not None,
                        60,
                        "a standby to take the scanner's lead",
                        interval=0.02,
                    )
                    failovers.append(time.monotonic() - killed_at)
                if kill == FOR_GOOD_AT:
                    gone = victim
                    victims[-1] += "+"
                    continue
                pause(rng.uniform(*DOWNTIME))
                victim.start()
            while waves:
                work.submit(waves.pop(0))
            killing_took = time.monotonic() - started
            converge = work.converge()
            wait_for(lambda: writes_settled(db_url), 90, "the last writes to be confirmed")
        except BaseException:
            for i, p in enumerate(procs):
                print(f"----- bridge {i} ({'running' if p.running else 'down'}):")
                print(p.tail(40))
            raise
        finally:
            for p in procs:
                p.close()

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        assert gone is not None
        shown = ", ".join(f"{f:.2f}" for f in failovers)
        print(
            f"scale: seed {seed}; 3 processes, {len(victims)} SIGKILLs (process index; L the "
            f"leader, + gone for good): {victims} ({killing_took:.0f} s), then converged in "
            f"{converge:.0f} s"
        )
        print(
            f"scale: leader failover after SIGKILL: [{shown}] s (max {max(failovers):.2f} s; "
            f"scan interval {SCAN_INTERVAL} s)"
        )
        print(f"scale: {report.line()}")
        assert len(victims) == KILLS and report.jobs == JOBS
        assert failovers, "the leader was never killed"

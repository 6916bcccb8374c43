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

The second test runs two processes with the *same* key: one holds the key's writer, the other
stands by. While jobs flow, the writer's holder is SIGKILLed as soon as it has a transaction in
flight, three times; each time the standby's writer takes over, resumes the stored transactions
(the same signed bytes, the same nonces) and the victim comes back as the new standby.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlmodel import Session, col, select
from web3 import Web3

from bridge.chain.deploy import OPERATOR_ROLE
from bridge.devchain import anvil_key, free_port
from bridge.devstack import LocalStack
from bridge.store.locks import advisory_key, operator_key, scanner_label
from bridge.store.models import ChainTx, TxState
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


def _this_start(p: BridgeProcess) -> str:
    """What ``p`` logged since its latest start."""
    return p.log_path.read_text(errors="replace").rsplit("===== start", 1)[-1]


def _ready(p: BridgeProcess) -> bool:
    """Whether ``p`` finished its start-up (its n-th "bridge running" line)."""
    return p.running and "bridge running for" in _this_start(p)


@contextlib.contextmanager
def _pg_stack(tmp_path: Path, prefix: str, **settings: object) -> Iterator[tuple[str, LocalStack]]:
    """A PostgreSQL database of its own and a stack on it (1-second blocks, one confirmation,
    the mixed emulator, ``LEASE`` and ``SCAN_INTERVAL``, ``settings`` on top), no bridge."""
    with (
        postgres_database(prefix) as db_url,
        LocalStack(
            tmp_path,
            block_time=1.0,
            confirmations=1,
            database_url=db_url,
            emulator_config=mixed_emulator(),
            start_bridge=False,
            settings={"claim_lease": LEASE, "scan_interval": SCAN_INTERVAL, **settings},
        ) as stack,
    ):
        yield db_url, stack


@contextlib.contextmanager
def _closed_after(procs: list[BridgeProcess]) -> Iterator[None]:
    """Closes every process when the block ends; on a failure, first prints each one's log
    tail."""
    try:
        yield
    except BaseException:
        for i, p in enumerate(procs):
            print(f"----- bridge {i} ({'running' if p.running else 'down'}):")
            print(p.tail(40))
        raise
    finally:
        for p in procs:
            p.close()


def _converge(work: Workload, db_url: str) -> float:
    """Waits until every job is terminal on-chain and every write confirmed; returns the
    seconds until the jobs were terminal."""
    converge = work.converge()
    wait_for(lambda: writes_settled(db_url), 90, "the last writes to be confirmed")
    return converge


def test_three_processes_with_three_keys_survive_sigkills_and_a_lost_member(
    tmp_path: Path,
) -> None:
    seed = fault_seed("scale")
    rng = random.Random(seed)
    with _pg_stack(tmp_path, "ce_bridge_scale", batch_size=50, tx_stuck_after=10.0) as (
        db_url,
        stack,
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

        def pause(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                work.send_due_cancellations()
                time.sleep(0.1)

        with _closed_after(procs):
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
                    wait_for(lambda: all(_ready(p) for p in live()), 60, "the standbys to be up")
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
            converge = _converge(work, db_url)

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


STANDBY_JOBS = 120
STANDBY_WAVES = 8
HANDOVERS = 3


def _in_flight(database_url: str, sender: str) -> dict[int, tuple[int, str]]:
    """The unconfirmed transactions of ``sender``: id -> (nonce, first broadcast hash)."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(ChainTx).where(
                    col(ChainTx.sender) == sender, col(ChainTx.state) == TxState.UNCONFIRMED
                )
            ).all()
            return {int(t.id or 0): (t.nonce, t.hashes.split(",")[0]) for t in rows}
    finally:
        engine.dispose()


def test_two_processes_with_one_key_hand_its_writer_over_on_sigkill(tmp_path: Path) -> None:
    seed = fault_seed("standby")
    rng = random.Random(seed)
    with _pg_stack(tmp_path, "ce_bridge_standby", batch_size=20) as (db_url, stack):
        database = db_url.rsplit("/", 1)[1]
        operator = stack.settings.operator_address
        writer_lock = operator_key(operator)
        start = RunStart.of(stack)
        procs = [
            BridgeProcess(stack.settings, tmp_path / f"bridge-{i}.log", api_port=free_port())
            for i in range(2)
        ]
        work = Workload(stack)
        kinds = mixed_kinds(STANDBY_JOBS, rng)
        waves = [kinds[i::STANDBY_WAVES] for i in range(STANDBY_WAVES)]
        takeovers: list[float] = []
        resumed: dict[int, tuple[int, str]] = {}  # in flight when their writer was SIGKILLed

        def writer() -> BridgeProcess | None:
            pid = _leader_pid(database, writer_lock)
            return next((p for p in procs if p.running and p.pid == pid), None)

        def standing_by(p: BridgeProcess) -> bool:
            return _ready(p) and "stands by" in _this_start(p)

        def hand_over() -> None:
            """SIGKILLs the writer's holder with a transaction in flight; the standby takes
            over, and the victim comes back as the new standby."""
            holder = writer()
            assert holder is not None
            standby = procs[1 - procs.index(holder)]
            assert standing_by(standby)
            quiet = _this_start(standby)  # a standby signs and sends nothing
            assert "stored tx " not in quiet and "sent tx " not in quiet, standby.tail()
            wait_for(
                lambda: bool(_in_flight(db_url, operator)),
                60,
                "a transaction in flight",
                interval=0.02,
                between=work.send_due_cancellations,
            )
            holder.kill()
            killed_at = time.monotonic()
            resumed.update(_in_flight(db_url, operator))  # what the dead writer left
            wait_for(
                lambda: writer() is standby, 60, "the standby's writer to take over", interval=0.02
            )
            takeovers.append(time.monotonic() - killed_at)
            wait_for(
                lambda: "sends its transactions now" in _this_start(standby),
                30,
                "the takeover's log line",
            )
            holder.start()  # back as the new standby
            wait_for(lambda: standing_by(holder), 90, "the victim to stand by")

        with _closed_after(procs):
            procs[0].start()
            wait_for(lambda: writer() is procs[0] and _ready(procs[0]), 90, "the first writer")
            procs[1].start()
            wait_for(lambda: standing_by(procs[1]), 90, "the second process to stand by")
            for _ in range(HANDOVERS):
                work.submit(waves.pop(0))
                work.submit(waves.pop(0))
                hand_over()
            while waves:
                work.submit(waves.pop(0))
            converge = _converge(work, db_url)

        report = audit(stack, work.jobs, database_url=db_url, start=start)
        # What a dead writer had in flight was finished by the next one as stored: the same
        # nonce, and the same signed transaction first (a fee bump appends its own hash).
        assert resumed, "no writer was killed with a transaction in flight"
        engine = create_engine(db_url)
        try:
            with Session(engine) as session:
                for tx_id, (nonce, first_hash) in resumed.items():
                    tx = session.get(ChainTx, tx_id)
                    assert tx is not None and tx.state == TxState.CONFIRMED, (tx_id, tx)
                    assert tx.nonce == nonce and tx.hashes.split(",")[0] == first_hash
        finally:
            engine.dispose()
        shown = ", ".join(f"{t:.2f}" for t in takeovers)
        print(
            f"standby: seed {seed}; 2 processes with one key, {len(takeovers)} writer SIGKILLs "
            f"with {len(resumed)} transactions in flight; takeover after [{shown}] s (tx "
            f"interval {stack.settings.tx_interval} s); converged in {converge:.0f} s"
        )
        print(f"standby: {report.line()}")
        assert len(takeovers) == HANDOVERS and report.jobs == STANDBY_JOBS

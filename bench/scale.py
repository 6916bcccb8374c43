"""Scale-out: the burst through 1, 2 and 4 ``ce-bridge run`` processes sharing one PostgreSQL
database (issue 12; ``docs/PROTOCOL.md``'s scale-out).

Each run is ``bench.throughput``'s burst (a fresh Anvil with 1-second blocks, the zero-delay CE
emulator as a child process, the typical spec, every submission sent at once) on a PostgreSQL
database of its own on 127.0.0.1:5432, created for the run and dropped after it. Each process
signs with its own operator key: Anvil's account 1 (the deployment's operator) and, for the
others, keys derived here, granted ``OPERATOR_ROLE`` and funded by the admin before the run.
They share the database, the contract and one output directory; one leads the scanner, all
claim CE work and batch the queued updates.

Per process count: wall time (first submission sent -> every ``JobCompleted`` on-chain), jobs/s,
every bridge process's CPU (``/proc/<pid>/stat`` utime + stime) summed and a job, what the
processes burn idle (CPU a second over ``IDLE_SECONDS`` before the burst, once all are up), the
PostgreSQL server's CPU for the run's database (its backends' ``/proc`` times: the server runs
on this machine), the operator transactions of all keys, the load average, and the emulator
beside it (its CPU in the run and, measured after the run, its capacity: ``bench.capacity``).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.types import Wei

from bench.capacity import capacity
from bench.common import (
    loadavg,
    process_cpu_seconds,
    signed_submissions,
    user_accounts,
    wait_for,
)
from bench.emulator import EmulatorProcess
from bench.process import BridgeProcess
from bench.throughput import (
    BLOCK_TIME,
    USERS,
    _Completions,
    _deploy,
    _send,
    bridge_settings,
)
from bridge.chain.deploy import OPERATOR_ROLE
from bridge.devchain import Anvil, anvil_key
from tests.builders import spec as typical_spec
from tests.pg import fresh_database, pg_admin

#: The process counts measured, each with a key of its own.
PROCESS_COUNTS = (1, 2, 4)
#: ETH each added operator key is given for gas.
OPERATOR_FUNDS_WEI = 10 * 10**18
#: Seconds the started processes are watched idle, before the burst.
IDLE_SECONDS = 5.0


@dataclass
class ScaleRun:
    """The burst through ``processes`` bridge processes on one PostgreSQL database.

    Attributes:
        processes: ``ce-bridge run`` processes (one operator key each).
        jobs: jobs submitted (all of them completed, or the run raised).
        send_seconds: time to send every submission.
        seconds: first submission sent -> every ``JobCompleted`` seen on-chain.
        jobs_per_second: ``jobs / seconds``.
        cpu_seconds: CPU time (user + system) of every bridge process in the run, summed.
        cpu_seconds_by_process: the same, per process (the first holds Anvil's account 1).
        cpu_ms_per_job: ``cpu_seconds`` a job, in milliseconds.
        idle_cpu_per_second: CPU seconds a second all the processes used together while idle
            (up, no job yet): their loops' floor, paid for as long as the run lasts.
        db_cpu_seconds: CPU of the PostgreSQL backends serving the run's database during the
            run (backends that ended before its end are missed: a lower bound).
        db_cpu_ms_per_job: ``db_cpu_seconds`` a job, in milliseconds.
        operator_txs: transactions sent by all the operator keys in the run.
        operator_txs_by_key: the same, per key.
        load: the 1-minute load average when the run ended.
        emulator: the CE emulator beside the figure: its CPU in the run (``cpu_seconds``,
            ``cpu_ms_per_job``) and its ``capacity`` measured after the run.
    """

    processes: int
    jobs: int
    send_seconds: float = 0.0
    seconds: float = 0.0
    jobs_per_second: float = 0.0
    cpu_seconds: float = 0.0
    cpu_seconds_by_process: list[float] = field(default_factory=list)
    cpu_ms_per_job: float = 0.0
    idle_cpu_per_second: float = 0.0
    db_cpu_seconds: float = 0.0
    db_cpu_ms_per_job: float = 0.0
    operator_txs: int = 0
    operator_txs_by_key: list[int] = field(default_factory=list)
    load: float = 0.0
    emulator: dict[str, Any] = field(default_factory=dict)


def operator_keys(count: int) -> list[str]:
    """``count`` operator keys: Anvil's account 1 (the deployment's operator), then keys
    derived from a fixed label (the same on every run; no Anvil account, so no nonce is
    shared with the submitters)."""
    extra = [Web3.keccak(text=f"ce-bench scale operator {i}").to_0x_hex() for i in range(1, count)]
    return [anvil_key(1), *extra]


def enlist_operators(w3: Web3, escrow: Contract, admin: str, keys: list[str]) -> None:
    """Grants ``OPERATOR_ROLE`` to each key's address and funds it (``OPERATOR_FUNDS_WEI``),
    from ``admin``; returns once every transaction is mined."""
    sent = []
    for key in keys:
        address = Account.from_key(key).address
        sent.append(escrow.functions.grantRole(OPERATOR_ROLE, address).transact({"from": admin}))
        sent.append(
            w3.eth.send_transaction(
                {"from": admin, "to": address, "value": Wei(OPERATOR_FUNDS_WEI)}
            )
        )
    for tx in sent:
        receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        assert receipt["status"] == 1, f"enlisting an operator failed: {tx.to_0x_hex()}"


def database_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend (OS pid) connected to ``database``."""
    rows = pg_admin("SELECT pid FROM pg_stat_activity WHERE datname = :name", name=database)
    return {int(str(pid)): process_cpu_seconds(int(str(pid))) for (pid,) in rows}


def scale_run(
    processes: int,
    jobs: int,
    *,
    timeout: float = 300.0,
    settings: dict[str, Any] | None = None,
    measure_capacity: bool = True,
) -> ScaleRun:
    """The burst of ``jobs`` through ``processes`` bridge processes (a key each) on a fresh
    PostgreSQL database (dropped afterwards); returns once all are Completed on-chain and
    every process has stopped.

    Raises:
        TimeoutError: not all completed within ``timeout`` seconds.
        sqlalchemy.exc.OperationalError: no PostgreSQL server on 127.0.0.1:5432.
    """
    keys = operator_keys(processes)
    with (
        tempfile.TemporaryDirectory(prefix="ce-bench-scale-") as tmp,
        fresh_database("ce_bench_scale") as database_url,
        Anvil(block_time=BLOCK_TIME) as node,
        EmulatorProcess(Path(tmp) / "emulator") as ce,
    ):
        base = Path(tmp)
        w3, escrow = _deploy(node.url)
        admin = str(user_accounts([0])[0].address)
        enlist_operators(w3, escrow, admin, keys[1:])
        addresses = [Web3.to_checksum_address(Account.from_key(k).address) for k in keys]
        nonces = [int(w3.eth.get_transaction_count(a)) for a in addresses]
        raws = signed_submissions(w3, escrow, typical_spec(), jobs, user_accounts(USERS))
        start_block = int(w3.eth.block_number)
        result = ScaleRun(processes, jobs)
        with contextlib.ExitStack() as running:
            bridges = []
            for i, key in enumerate(keys):
                config = bridge_settings(
                    node.url,
                    escrow.address,
                    ce.base_url,
                    database_url,
                    0,
                    start_block,
                    operator_key=key,
                    output_dir=base / "outputs",
                    **(settings or {}),
                )
                bridge = BridgeProcess(config, base / f"bridge-{i}.log")
                bridges.append(running.enter_context(bridge))
            idle0 = [b.cpu_seconds() or 0.0 for b in bridges]
            time.sleep(IDLE_SECONDS)  # a measurement window, not a wait for a condition
            cpu0 = [b.cpu_seconds() or 0.0 for b in bridges]
            result.idle_cpu_per_second = round((sum(cpu0) - sum(idle0)) / IDLE_SECONDS, 3)
            database = database_url.rsplit("/", 1)[1]
            db0 = database_backends_cpu(database)
            emulator_cpu0 = ce.cpu_seconds()
            completions = _Completions(node.url, escrow, start_block)
            t0 = time.monotonic()
            _send(node.url, raws, 0.0)
            result.send_seconds = round(time.monotonic() - t0, 2)
            t1 = wait_for(
                lambda: completions.poll() >= jobs,
                timeout,
                f"{jobs} jobs completed by {processes} bridge processes",
            )
            used = [(b.cpu_seconds() or 0.0) - c for b, c in zip(bridges, cpu0, strict=True)]
            emulator_cpu = ce.cpu_seconds() - emulator_cpu0
            db1 = database_backends_cpu(database)
            db_cpu = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())
        if measure_capacity:
            # The same emulator process, once the bridges have stopped: what it can serve.
            result.emulator["capacity"] = capacity(ce.base_url, server_pids=[ce.pid])
        result.emulator["cpu_seconds"] = round(emulator_cpu, 2)
        result.emulator["cpu_ms_per_job"] = round(emulator_cpu / jobs * 1000, 2)
        result.seconds = round(t1 - t0, 2)
        result.jobs_per_second = round(jobs / (t1 - t0), 1)
        result.cpu_seconds_by_process = [round(u, 2) for u in used]
        result.cpu_seconds = round(sum(used), 2)
        result.cpu_ms_per_job = round(sum(used) / jobs * 1000, 2)
        result.db_cpu_seconds = round(db_cpu, 2)
        result.db_cpu_ms_per_job = round(db_cpu / jobs * 1000, 2)
        result.operator_txs_by_key = [
            int(w3.eth.get_transaction_count(a)) - n for a, n in zip(addresses, nonces, strict=True)
        ]
        result.operator_txs = sum(result.operator_txs_by_key)
        result.load = loadavg()
        return result


def scale(jobs: int, timeout: float = 300.0) -> dict[str, Any]:
    """The burst of ``jobs`` through 1, 2 and 4 processes (``PROCESS_COUNTS``), one after the
    other; keyed ``processes1``, ``processes2``, ``processes4``."""
    return {f"processes{n}": asdict(scale_run(n, jobs, timeout=timeout)) for n in PROCESS_COUNTS}

"""``ce-bridge run`` as a new operator meets it: its start-up checks, the database's binding to
one chain and contract, the process locks, and the stored dispatch pause.

Every bridge here is a real ``ce-bridge run`` subprocess against a real Anvil, the CE emulator
over HTTP, and a SQLite file or a PostgreSQL database of its own. A refused start must end with
exit status 1 and exactly one line of output, with no traceback, and leave the database as it
was.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import create_engine, inspect, text
from web3 import Web3

from bridge.chain.artifacts import load_artifact
from bridge.chain.deploy import OPERATOR_ROLE, connect, deploy_escrow
from bridge.chain.spec import Status
from bridge.checks import start_bridge
from bridge.config import Settings, load_settings
from bridge.devchain import Anvil, anvil_key, free_port
from bridge.devstack import LOCAL_AUTHENTICATOR, LocalStack, local_roles
from bridge.errors import AlreadyRunning, StoreError, StoreUnavailable
from bridge.remote.emulator import EmulatorConfig
from bridge.remote.server import EmulatorServer
from bridge.store.db import open_database
from bridge.store.locks import (
    AdvisoryLock,
    acquire_process_lock,
    advisory_lock_held,
    operator_key,
)
from tests.faults.harness import (
    BridgeProcess,
    Workload,
    bridge_env,
    emulator_stats,
    job_key,
    job_spec,
    wait_for,
)
from tests.pg import pg_admin, postgres_available, postgres_database

TOKEN = "admin-token-runtime-tests-3f9a"
QUICK = EmulatorConfig(provisioning_seconds=0.2, downloading_seconds=0.2, running_seconds=0.5)


def run_once(
    settings: Settings, timeout: float = 90.0, **overrides: object
) -> tuple[int, list[str]]:
    """Runs ``ce-bridge run`` until it exits; its exit status and non-empty output lines."""
    done = subprocess.run(
        [sys.executable, "-c", "from bridge.cli import main; main()", "run"],
        env=bridge_env(settings, **overrides),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, lines


def assert_one_line_refusal(code: int, lines: list[str], *needles: str) -> str:
    """Exit status 1, one line of output, no traceback, every needle in it."""
    assert code == 1, lines
    assert len(lines) == 1, lines
    (line,) = lines
    assert "Traceback" not in line
    for needle in needles:
        assert needle in line, line
    return line


def snapshot(database_url: str) -> dict[str, list[str]]:
    """Every row of every table, for comparing a database before and after."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                table: sorted(
                    repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))
                )
                for table in inspect(conn).get_table_names()
            }
    finally:
        engine.dispose()


def log_text(process: BridgeProcess) -> str:
    """What the bridge process wrote so far."""
    try:
        return process.log_path.read_text(errors="replace")
    except OSError:
        return ""


def start_and_wait(process: BridgeProcess, timeout: float = 60.0) -> None:
    """Starts the process and waits until it says it is running (its n-th start)."""
    process.start()
    runs = process.starts

    def running() -> bool:
        assert process.running, f"the bridge exited:\n{process.tail()}"
        return log_text(process).count("bridge running for") >= runs

    wait_for(running, timeout, "the bridge to start")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database created and dropped here."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    with postgres_database("ce_bridge_i10rt") as url:
        yield url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Anvil, the emulator and the contracts, for the refused starts (no bridge runs)."""
    workdir = tmp_path_factory.mktemp("refusals")
    with LocalStack(workdir, block_time=0.5, confirmations=1, start_bridge=False) as made:
        yield made


# ---------------------------------------------------------------------------- start-up checks


def test_run_refuses_an_address_without_code(stack: LocalStack) -> None:
    empty = stack.roles.user  # an account: no code
    code, lines = run_once(stack.settings, contract_address=empty)
    assert_one_line_refusal(code, lines, "BRIDGE_CONTRACT_ADDRESS", "no contract at", empty)


def test_run_refuses_a_contract_that_is_not_a_job_escrow(stack: LocalStack) -> None:
    other = stack.consumer.address
    code, lines = run_once(stack.settings, contract_address=other)
    assert_one_line_refusal(code, lines, "BRIDGE_CONTRACT_ADDRESS", "not a JobEscrow", other)


def test_run_refuses_a_key_without_operator_role(stack: LocalStack) -> None:
    key = anvil_key(7)
    address = local_address(key)
    assert not stack.escrow.functions.hasRole(OPERATOR_ROLE, address).call()
    code, lines = run_once(stack.settings, operator_key=key)
    assert_one_line_refusal(code, lines, "BRIDGE_OPERATOR_KEY", address, "lacks OPERATOR_ROLE")


def local_address(key: str) -> str:
    return str(Account.from_key(key).address)


def test_run_waits_for_the_node_and_starts_when_it_answers(tmp_path: Path) -> None:
    # The chain (contracts deployed) is saved and its node stopped; the bridge starts while
    # nothing answers on the node's port, then the node comes back there with that chain.
    state = tmp_path / "anvil-state.json"
    roles = local_roles()
    first = Anvil(extra_args=("--dump-state", str(state))).start()
    port = first.port
    try:
        w3 = connect(first.url, roles.keys)
        address = deploy_escrow(
            w3, roles.admin, operators=[roles.operator], treasury=roles.treasury
        )
    finally:
        first.stop()
    assert state.is_file()
    emulator = EmulatorServer(QUICK.model_copy(update={"data_dir": tmp_path / "emulator"})).start()
    node: Anvil | None = None
    bridge: BridgeProcess | None = None
    try:
        settings = _settings(
            rpc_url=first.url,
            contract_address=address,
            ce_url=emulator.base_url,
            database_url=f"sqlite:///{tmp_path / 'bridge.db'}",
        )
        bridge = BridgeProcess(settings, tmp_path / "bridge.log")
        bridge.start()
        wait_for(
            lambda: log_text(bridge).count("waiting to start") >= 2,
            60,
            "two back-off lines while the node is down",
        )
        waiting = [line for line in log_text(bridge).splitlines() if "waiting to start" in line]
        assert all("BRIDGE_RPC_URL" in line and "retrying in" in line for line in waiting)
        assert "retrying in 1 s" in waiting[0] and "retrying in 2 s" in waiting[1]
        assert bridge.running and "Traceback" not in log_text(bridge)

        node = Anvil(port=port, block_time=0.5, extra_args=("--load-state", str(state))).start()
        wait_for(lambda: "bridge running for" in log_text(bridge), 60, "the bridge to start")
        w3 = connect(node.url, roles.keys)
        escrow = w3.eth.contract(address=address, abi=_escrow_abi())
        job_id = _submit(w3, escrow, roles.user)
        wait_for(
            lambda: Status(escrow.functions.getJob(job_id).call()[1]) is Status.COMPLETED,
            90,
            "the job to complete",
        )
    finally:
        if bridge is not None:
            bridge.close()
        if node is not None:
            node.stop()
        emulator.stop()


def _settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "operator_key": local_roles().keys[1],
        "ce_authenticator": LOCAL_AUTHENTICATOR,
        "confirmations": 1,
        "api_port": free_port(),
        "scan_interval": 0.25,
        "poll_interval": 0.25,
        "tx_interval": 0.2,
    }
    return load_settings(**{**base, **values})


def _escrow_abi() -> Any:
    return load_artifact("JobEscrow").abi


def _submit(w3: Web3, escrow: Any, user: str) -> int:
    spec = job_spec("ok", 0).to_abi()
    price = int(escrow.functions.quote(spec, 0).call())
    tx = escrow.functions.submitJob(spec, 0).transact({"from": user, "value": price})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    (event,) = escrow.events.JobSubmitted().process_receipt(receipt)
    return int(event["args"]["jobId"])


# ---------------------------------------------------------------------------- binding


def test_a_database_bound_to_one_contract_refuses_another(
    tmp_path: Path, database_url: str
) -> None:
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        database_url=database_url,
        emulator_config=QUICK,
        start_bridge=False,
    ) as stack:
        first = stack.escrow.address
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            start_and_wait(bridge)
            work = Workload(stack)
            (job,) = work.submit(["ok"])
            wait_for(
                lambda: work.status(job.job_id) is Status.COMPLETED, 90, "job 1 of A to complete"
            )
            bridge.terminate()
        finally:
            bridge.close()
        before = snapshot(database_url)
        assert len(before["job"]) == 1 and before["output_file"], before

        # A redeployed escrow: its job ids start again at the same numbers.
        r = stack.roles
        second = deploy_escrow(stack.w3, r.admin, operators=[r.operator], treasury=r.treasury)
        assert second != first
        chain_id = stack.w3.eth.chain_id
        code, lines = run_once(stack.settings, contract_address=second)
        line = assert_one_line_refusal(
            code, lines, "BRIDGE_DATABASE_URL", first, second, f"chain {chain_id}"
        )
        assert "one database per chain and contract" in line
        assert snapshot(database_url) == before  # not a row read into a change

        # config check says the same, on one line.
        done = subprocess.run(
            [sys.executable, "-c", "from bridge.cli import main; main()", "config", "check"],
            env=bridge_env(stack.settings, contract_address=second),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert any(first in out and second in out for out in done.stderr.splitlines())
        assert snapshot(database_url) == before


def test_a_database_bound_to_one_chain_refuses_another(tmp_path: Path) -> None:
    # The same deployer's first contract has the same address on every fresh chain: only the
    # chain id tells the two apart.
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    with LocalStack(
        tmp_path, block_time=0.5, confirmations=1, database_url=database_url, start_bridge=False
    ) as stack:
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            start_and_wait(bridge)
            bridge.terminate()
        finally:
            bridge.close()
        before = snapshot(database_url)
        roles = stack.roles
        with Anvil(chain_id=31338) as other:
            w3 = connect(other.url, roles.keys)
            address = deploy_escrow(
                w3, roles.admin, operators=[roles.operator], treasury=roles.treasury
            )
            assert address == stack.escrow.address
            code, lines = run_once(stack.settings, rpc_url=other.url)
        assert_one_line_refusal(code, lines, "chain 31337", "chain 31338", address)
        assert snapshot(database_url) == before


# ---------------------------------------------------------------------------- process locks


def test_a_second_run_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'bridge.db'}"
    with LocalStack(
        tmp_path, block_time=0.5, confirmations=1, database_url=database_url, start_bridge=False
    ) as stack:
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            start_and_wait(bridge)
            code, lines = run_once(stack.settings, api_port=free_port())
            needles = ["another ce-bridge run", "bridge.db.lock", f"pid {bridge_pid(bridge)}"]
            assert_one_line_refusal(code, lines, *needles)
            assert bridge.running
            bridge.terminate()
            # Once the first is gone, a start is allowed again.
            start_and_wait(bridge)
        finally:
            bridge.close()


def writer_state(port: int) -> tuple[str, str]:
    """What the bridge on ``port`` says of its writer: the ``writer`` check of ``/readyz`` and
    the ``ce_bridge_writer_active`` line of ``/metrics``."""
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).json()
    (check,) = [c for c in ready["checks"] if c["name"] == "writer"]
    assert check["ok"], check  # a standby is ready: it reports, it does not fail
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    (gauge,) = [ln for ln in metrics.splitlines() if ln.startswith("ce_bridge_writer_active ")]
    return check["message"], gauge


def test_a_second_run_with_the_same_key_on_postgresql_stands_by_and_takes_over(
    tmp_path: Path,
) -> None:
    with (
        postgres_database("ce_bridge_i10rt") as database_url,
        LocalStack(
            tmp_path, block_time=0.5, confirmations=1, database_url=database_url, start_bridge=False
        ) as stack,
    ):
        operator = stack.settings.operator_address
        ports = free_port(), free_port()
        first = BridgeProcess(stack.settings, tmp_path / "first.log", api_port=ports[0])
        second = BridgeProcess(stack.settings, tmp_path / "second.log", api_port=ports[1])
        try:
            start_and_wait(first)
            start_and_wait(second)
            standby = [ln for ln in log_text(second).splitlines() if "stands by" in ln]
            assert len(standby) == 1, log_text(second)
            assert operator in standby[0] and "advisory lock" in standby[0]
            assert "stands by" not in log_text(first)
            message, gauge = writer_state(ports[1])
            assert message.startswith("standing by") and operator in message, message
            assert gauge == "ce_bridge_writer_active 0.0", gauge
            message, gauge = writer_state(ports[0])
            assert message.startswith("sends operator"), message
            assert gauge == "ce_bridge_writer_active 1.0", gauge
            # Still a whole process: its API serves jobs, and it keeps running.
            assert httpx.get(f"http://127.0.0.1:{ports[1]}/jobs", timeout=30).status_code == 200
            assert second.running
            # The holder dies: its lock goes with its connection, and the standby's writer
            # takes it on one of its next rounds.
            first.kill()
            wait_for(
                lambda: writer_state(ports[1])[1] == "ce_bridge_writer_active 1.0",
                30,
                "the standby's writer to take over",
            )
            assert "sends its transactions now" in log_text(second)
            assert "Traceback" not in log_text(second)
            # The old holder comes back: now it is the standby.
            start_and_wait(first)
            wait_for(lambda: "stands by" in log_text(first), 30, "the old holder to stand by")
            assert writer_state(ports[0])[1] == "ce_bridge_writer_active 0.0"
        finally:
            first.close()
            second.close()


def bridge_pid(process: BridgeProcess) -> int:
    """The pid of the bridge process (python -c ... run)."""
    assert process._process is not None
    return process._process.pid


def test_processes_with_different_keys_share_a_postgresql_database(tmp_path: Path) -> None:
    with (
        postgres_database("ce_bridge_i10rt") as database_url,
        LocalStack(
            tmp_path, block_time=0.5, confirmations=1, database_url=database_url, start_bridge=False
        ) as stack,
    ):
        second_key = anvil_key(5)
        second = local_address(second_key)
        grant = stack.escrow.functions.grantRole(OPERATOR_ROLE, second).transact(
            {"from": stack.roles.admin}
        )
        stack.w3.eth.wait_for_transaction_receipt(grant, timeout=60)
        one = BridgeProcess(stack.settings, tmp_path / "one.log")
        two = BridgeProcess(
            stack.settings, tmp_path / "two.log", operator_key=second_key, api_port=free_port()
        )
        try:
            start_and_wait(one)
            start_and_wait(two)
            engine = create_engine(database_url)
            try:
                with engine.connect() as conn:
                    for operator in (stack.settings.operator_address, second):
                        assert advisory_lock_held(conn, operator_key(operator))
            finally:
                engine.dispose()
        finally:
            one.close()
            two.close()


def test_a_run_whose_lock_another_process_took_stops_with_one_line(tmp_path: Path) -> None:
    with (
        postgres_database("ce_bridge_i10rt") as database_url,
        LocalStack(
            tmp_path, block_time=0.5, confirmations=1, database_url=database_url, start_bridge=False
        ) as stack,
    ):
        name = database_url.rsplit("/", 1)[1]
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            start_and_wait(bridge)
            # Its lock connection ends (a failover, a DBA) and, before the bridge notices,
            # another process with the same key takes the lock.
            (holder,) = pg_admin(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = :name "
                "AND a.application_name LIKE 'ce-bridge operator %'",
                name=name,
            )
            pg_admin("SELECT pg_terminate_backend(:pid)", pid=holder[0])
            taken: list[Any] = []

            def take() -> bool:
                lock = acquire_process_lock(database_url, stack.settings.operator_address)
                if not lock.held():
                    lock.release()
                    return False
                taken.append(lock)
                return True

            wait_for(take, 30, "the lock to be free")
            try:
                wait_for(lambda: not bridge.running, 60, "the bridge to stop")
                assert bridge._process is not None
                assert bridge._process.returncode == 1
            finally:
                taken[0].release()
            text_ = log_text(bridge)
            assert "Traceback" not in text_
            assert text_.splitlines()[-1].startswith("error: another ce-bridge run with operator")
            assert "took its writer" in text_.splitlines()[-1]
        finally:
            bridge.close()


def test_the_advisory_lock_is_per_key_waits_as_a_standby_and_is_taken_again() -> None:
    with postgres_database("ce_bridge_i10rt") as url:
        name = url.rsplit("/", 1)[1]
        alice, bob = "0x" + "a1" * 20, "0x" + "b2" * 20
        first = acquire_process_lock(url, alice)
        other = acquire_process_lock(url, bob)  # another key: its own lock
        try:
            assert first.held() and other.held()
            # A second process with the same key stands by (not refused, not held) ...
            standby = acquire_process_lock(url, alice)
            assert isinstance(standby, AdvisoryLock) and not standby.holding
            assert not standby.held()
            standby.verify()  # a standby has nothing to lose
            # ... and takes the lock once the holder lets go.
            first.release()
            assert standby.held() and standby.holding
            assert isinstance(first, AdvisoryLock) and not first.holding
            first = standby
            # The server ends the lock's connection: the lock is gone with it, and verify()
            # takes it again on a new connection.
            drop_connections(name)
            first._verify_every = 0.0
            first.verify()
            assert first.holding
            # held() proves it on the spot, whatever verify()'s interval.
            first._verify_every = 3600.0
            drop_connections(name)
            assert first.held()
            late = acquire_process_lock(url, alice)
            try:
                assert not late.held()
            finally:
                late.release()
            # Lost again, and another process takes it meanwhile: the holder's next look says
            # so (a writer round stops its process before it sends anything).
            drop_connections(name)
            thief = acquire_process_lock(url, alice)
            try:
                assert thief.held()
                with pytest.raises(AlreadyRunning, match="took its writer"):
                    first.held()
                assert not first.holding
            finally:
                thief.release()
        finally:
            first.release()
            other.release()
        again = acquire_process_lock(url, alice)  # released: free for the next process
        assert again.held()
        again.release()


def drop_connections(database: str) -> None:
    """Ends every server connection to ``database`` (as an outage or a failover would)."""
    pg_admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()",
        name=database,
    )


# ---------------------------------------------------------------------------- dispatch pause


def test_the_dispatch_pause_survives_a_restart(tmp_path: Path) -> None:
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        emulator_config=QUICK,
        start_bridge=False,
        settings={"admin_token": TOKEN},
    ) as stack:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            start_and_wait(bridge)
            answer = httpx.post(f"{stack.api_url}/admin/pause", headers=admin, timeout=10)
            assert answer.json() == {"dispatch_paused": True}
            assert "dispatch of new jobs paused by the operator" in log_text(bridge)
            bridge.terminate()

            start_and_wait(bridge)
            second_start = log_text(bridge).rsplit("===== start 2", 1)[1]
            assert "dispatch of new jobs is paused (stored in the database)" in second_start
            assert _metric(stack, "ce_bridge_dispatch_paused") == 1.0

            work = Workload(stack)
            (job,) = work.submit(["ok"])
            # Stored, and the scanner well past its block: the worker has had many rounds.
            wait_for(lambda: _job_state(stack, job.job_id) is not None, 60, "the job stored")
            wait_for(
                lambda: _metric(stack, "ce_bridge_scan_cursor_block") >= job.block + 4,
                60,
                "the scanner to pass the job's block",
            )
            assert _job_state(stack, job.job_id) == "new"
            assert job_key(stack, job.job_id) not in emulator_stats(stack)["by_key"]
            assert work.status(job.job_id) is Status.SUBMITTED

            answer = httpx.post(f"{stack.api_url}/admin/resume", headers=admin, timeout=10)
            assert answer.json() == {"dispatch_paused": False}
            wait_for(lambda: work.status(job.job_id) is Status.COMPLETED, 90, "the job to complete")
            assert _metric(stack, "ce_bridge_dispatch_paused") == 0.0
        finally:
            bridge.close()


def _metric(stack: LocalStack, name: str) -> float:
    text_ = httpx.get(f"{stack.api_url}/metrics", timeout=10).text
    for line in text_.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _job_state(stack: LocalStack, job_id: int) -> str | None:
    answer = httpx.get(f"{stack.api_url}/jobs/{job_id}", timeout=10)
    if answer.status_code == 404:
        return None
    state: str = answer.json()["state"]
    return state


# ---------------------------------------------------------------------------- database errors


def test_database_errors_say_what_is_wrong_and_whether_waiting_helps() -> None:
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    missing = "postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/ce_bridge_no_such_db"
    with pytest.raises(StoreError) as refused:
        open_database(missing)
    assert not isinstance(refused.value, StoreUnavailable)  # waiting will not create it
    message = str(refused.value)
    assert 'database "ce_bridge_no_such_db" does not exist' in message
    assert "hunter2" not in message and "\n" not in message
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    with pytest.raises(StoreUnavailable, match=r"(?i)connection refused"):
        open_database(closed)


class _Lines(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("down", ["ce", "database"])
def test_the_start_waits_for_an_unreachable_service_one_line_per_backoff(
    stack: LocalStack, tmp_path: Path, down: str
) -> None:
    dead = free_port()
    if down == "ce":
        update = {
            "ce_url": f"http://127.0.0.1:{dead}/remotejobs/v2/",
            "database_url": f"sqlite:///{tmp_path / 'bridge.db'}",
        }
        variable = "BRIDGE_CE_URL"
    else:
        if not postgres_available():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        update = {"database_url": f"postgresql+psycopg://postgres:pw-9f2@127.0.0.1:{dead}/x"}
        variable = "BRIDGE_DATABASE_URL"
    settings = stack.settings.model_copy(update=update)
    stop = threading.Event()
    handler = _Lines()
    logger = logging.getLogger("bridge.start")
    logger.addHandler(handler)
    started: list[object] = []
    thread = threading.Thread(
        target=lambda: started.append(start_bridge(settings, stop, first_delay=0.05, max_delay=0.2))
    )
    try:
        thread.start()
        wait_for(lambda: len(handler.lines) >= 4, 30, "four back-off lines")
    finally:
        stop.set()
        thread.join(30)
        logger.removeHandler(handler)
    assert started == [None]  # stopped while waiting: no bridge
    for line in handler.lines:
        assert line.startswith(f"waiting to start: {variable}"), line
        assert "retrying in" in line and "pw-9f2" not in line and "\n" not in line
    if down == "ce":  # the lock it held while waiting is free again
        acquire_process_lock(settings.database_url, settings.operator_address).release()

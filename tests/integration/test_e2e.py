"""End to end: 20 mixed jobs through a real Anvil (1-second blocks, 2 confirmations), the real CE
emulator over HTTP and the bridge, on a SQLite file and on PostgreSQL.

Checks every job's terminal state on-chain, refunds and earnings to the wei, the consumer's
callbacks, exactly one remote job per dispatched on-chain job, and the result hash recomputed
with ``sha256sum`` from the files CE serves.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from web3.types import TxParams, Wei

from bridge.chain.spec import InputFile, JobSpec, Resources, Status
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig
from bridge.waiting import wait_until

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
FAIL_MARKER = "exit 1"
NEVER_FINISHES = "charityengine:sleep"


def _spec(command: str, app: str = "charityengine:wolframengine") -> JobSpec:
    return JobSpec(
        app=app,
        command_line=command,
        specs=Resources(vcpus=1, ram=256, disk=256),
        max_hours=1,
        input_files=(InputFile("in.txt", "https://example.org/ce-bridge/e2e/in.txt"),),
    )


@dataclass
class Submitted:
    job_id: int
    kind: str
    expected: Status
    payment: int
    via_consumer: bool = False


def _postgres_available() -> bool:
    try:
        with create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database created and dropped here."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    if not _postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    name = f"ce_bridge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    wait_until(condition, timeout, 0.25, what, error=AssertionError)


def _submit(stack: LocalStack, spec: JobSpec, *, callback_gas: int = 0) -> tuple[int, int]:
    user: TxParams = {"from": stack.roles.user}
    price = int(stack.escrow.functions.quote(spec.to_abi(), callback_gas).call())
    if callback_gas:
        fn = stack.consumer.functions.submit(spec.to_abi(), callback_gas)
    else:
        fn = stack.escrow.functions.submitJob(spec.to_abi(), 0)
    job_id = int(fn.call({**user, "value": Wei(price)}))
    receipt = stack.w3.eth.wait_for_transaction_receipt(fn.transact({**user, "value": Wei(price)}))
    assert receipt["status"] == 1
    return job_id, price


def _status(stack: LocalStack, job_id: int) -> Status:
    return Status(stack.escrow.functions.getJob(job_id).call()[1])


def test_twenty_mixed_jobs_end_to_end(tmp_path: Path, database_url: str) -> None:
    config = EmulatorConfig(
        provisioning_seconds=0.2,
        downloading_seconds=0.2,
        running_seconds=0.5,
        fail_commands=frozenset({FAIL_MARKER}),
        never_finish_apps=frozenset({NEVER_FINISHES}),
    )
    with LocalStack(
        tmp_path,
        block_time=1.0,
        confirmations=2,
        database_url=database_url,
        emulator_config=config,
    ) as stack:
        jobs: list[Submitted] = []
        for i in range(8):
            job_id, paid = _submit(stack, _spec(f"echo {i} > output/out.txt"))
            jobs.append(Submitted(job_id, "plain", Status.COMPLETED, paid))
        for i in range(4):
            job_id, paid = _submit(
                stack, _spec(f"echo cb{i} > output/out.txt"), callback_gas=100_000
            )
            jobs.append(Submitted(job_id, "callback", Status.COMPLETED, paid, via_consumer=True))
        for i in range(4):
            job_id, paid = _submit(stack, _spec(f"run {i} && {FAIL_MARKER}"))
            jobs.append(Submitted(job_id, "ce-fails", Status.FAILED, paid))
        # Two cancelled while still Submitted: refunded at once, never sent to CE.
        for i in range(2):
            job_id, paid = _submit(stack, _spec(f"echo early{i} > output/out.txt"))
            tx = stack.escrow.functions.cancelJob(job_id).transact({"from": stack.roles.user})
            stack.w3.eth.wait_for_transaction_receipt(tx)
            jobs.append(Submitted(job_id, "cancel-submitted", Status.CANCELLED, paid))
        # Two cancelled once running on CE: CancelRequested, the bridge cancels remotely.
        late = []
        for i in range(2):
            job_id, paid = _submit(stack, _spec(f"sleep {i}", app=NEVER_FINISHES))
            late.append(job_id)
            jobs.append(Submitted(job_id, "cancel-running", Status.CANCELLED, paid))
        assert len(jobs) == 20

        for job_id in late:
            _wait(
                lambda j=job_id: _status(stack, j) >= Status.ACCEPTED, 60, f"job {job_id} accepted"
            )
            tx = stack.escrow.functions.cancelJob(job_id).transact({"from": stack.roles.user})
            stack.w3.eth.wait_for_transaction_receipt(tx)

        _wait(
            lambda: all(_status(stack, j.job_id).is_terminal for j in jobs),
            180,
            "every job to be terminal on-chain",
        )

        # Every job ended as expected.
        for job in jobs:
            assert _status(stack, job.job_id) is job.expected, job
            onchain = stack.escrow.functions.getJob(job.job_id).call()
            assert onchain[5] == 0, f"job {job.job_id} still holds a payment"

        # Money, exact to the wei (a job cancelled once Running pays its base fee and its hours).
        running = {j.job_id for j in jobs if j.kind == "cancel-running"}
        kept = _running_cancel_charges(stack, running)
        refunded_user = sum(
            j.payment - kept.get(j.job_id, 0) for j in jobs if j.expected != Status.COMPLETED
        )
        earned = sum(j.payment for j in jobs if j.expected == Status.COMPLETED) + sum(kept.values())
        credit = stack.escrow.functions.creditOf
        assert credit(stack.roles.user).call() == refunded_user
        assert credit(stack.consumer.address).call() == 0
        assert credit(stack.roles.treasury).call() == earned
        assert stack.w3.eth.get_balance(stack.escrow.address) == refunded_user + earned

        # The consumer got its callbacks, with the on-chain result hash.
        for job in (j for j in jobs if j.via_consumer):
            result = stack.escrow.functions.getJob(job.job_id).call()[6]
            assert stack.consumer.functions.results(job.job_id).call() == result

        # The scanner stored each job's callback gas limit from JobSubmitted's last field (the
        # transaction manager sizes batches from it).
        from sqlmodel import Session

        from bridge.store.models import Job

        assert stack.bridge is not None
        with Session(stack.bridge.db) as session:
            for job in jobs:
                row = session.get(Job, job.job_id)
                assert row is not None
                assert row.callback_gas_limit == (100_000 if job.via_consumer else 0), job

        # Exactly one remote job per on-chain job that was dispatched.
        assert stack.emulator is not None
        stats = httpx.get(stack.emulator.url + "_emulator/stats").json()
        dispatched = [j for j in jobs if j.kind != "cancel-submitted"]
        assert len(stats["by_key"]) == len(dispatched)
        assert stats["jobs"] == len(dispatched)
        assert all(entry["jobs"] == 1 for entry in stats["by_key"].values())

        # The result hash, recomputed by hand with sha256sum from the files CE serves.
        completed = next(j for j in jobs if j.kind == "plain")
        onchain_hash = bytes(stack.escrow.functions.getJob(completed.job_id).call()[6])
        assert _sha256sum_hash(stack, completed.job_id, tmp_path / "check") == onchain_hash


def _running_cancel_charges(stack: LocalStack, ids: set[int]) -> dict[int, int]:
    """What the treasury keeps of each job of ``ids`` cancelled after ``JobRunning``: the base fee
    and, for each hour started until ``JobCancelled`` (at most the spec's one hour), the vCPU-hour
    price of its one vcpu."""
    escrow, w3 = stack.escrow, stack.w3
    base_fee, vcpu_hour, _ = escrow.functions.pricing().call()
    ran = {
        int(e["args"]["jobId"]): e
        for e in escrow.events.JobRunning().get_logs(from_block=0, to_block="latest")
    }
    charges: dict[int, int] = {}
    for entry in escrow.events.JobCancelled().get_logs(from_block=0, to_block="latest"):
        job_id = int(entry["args"]["jobId"])
        if job_id in ids and job_id in ran:
            started = int(w3.eth.get_block(ran[job_id]["blockNumber"])["timestamp"])
            ended = int(w3.eth.get_block(entry["blockNumber"])["timestamp"])
            charges[job_id] = base_fee + vcpu_hour * min((ended - started) // 3600 + 1, 1)
    return charges


def _sha256sum_hash(stack: LocalStack, job_id: int, workdir: Path) -> bytes:
    """Downloads the job's outputs from CE into ``workdir/output`` and hashes them with the
    shell pipeline of docs/PROTOCOL.md."""
    from sqlmodel import Session

    from bridge.store.models import Job

    assert stack.bridge is not None and stack.emulator is not None
    with Session(stack.bridge.db) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.remote_job_id
        remote_id = job.remote_job_id
    body = {"authenticator": stack.settings.ce_authenticator.get_secret_value(), "jobId": remote_id}
    status = httpx.post(stack.emulator.base_url + "job-status", json=body).json()
    output = workdir / "output"
    for item in status["outputFiles"]:
        target = output / item["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(httpx.get(item["url"]).content)
    assert shutil.which("sha256sum")
    pipeline = "find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum"
    out = subprocess.run(
        ["bash", "-c", pipeline], cwd=output, capture_output=True, text=True, check=True
    )
    return bytes.fromhex(out.stdout.split()[0])

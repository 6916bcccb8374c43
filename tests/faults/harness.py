"""Machinery shared by the fault-injection suite.

- ``fault_seed``: the seed of a test's random schedule, printed so a failure can be replayed
  (``CE_FAULT_SEED=<n> pytest tests/faults/...``).
- ``wait_for``: polls a condition until a deadline; every wait in the suite is bounded.
- ``BridgeProcess``: ``ce-bridge run`` as a subprocess in its own process group, configured with
  ``BRIDGE_*`` variables from a ``Settings``; killed (SIGKILL) or stopped (SIGTERM) on demand and
  always reaped by ``close()``.
- ``Workload``: submits jobs of mixed kinds (completing, failing on CE, cancelled while
  Submitted, cancelled once accepted) and sends the cancellations when their time comes.
- ``audit``: the end-of-run checks against the chain, the emulator and the bridge's database.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from eth_typing import Hash32, HexStr
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlmodel import Session, col, select
from web3 import Web3
from web3.contract import Contract
from web3.types import TxData, TxParams, Wei

from bridge.chain.revert import error_name
from bridge.chain.spec import InputFile, JobSpec, Resources, Status
from bridge.config import Settings
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.remote.convention import is_terminal
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import ChainTx, TxState, Update
from bridge.waiting import wait_until

#: A command line containing this makes the emulator's job fail.
FAIL_MARKER = "exit 1"
#: The emulator's jobs with this app never finish (until cancelled).
NEVER_FINISHES = "charityengine:sleep"
#: The emulator answers job-create for this app with 5xx, always (``error_apps``).
OUTAGE_APP = "charityengine:outage"

#: Job kinds and the on-chain status each must end in.
EXPECTED = {
    "ok": Status.COMPLETED,
    "ce-fail": Status.FAILED,
    "cancel-early": Status.CANCELLED,  # cancelled right after submission
    "cancel-running": Status.CANCELLED,  # cancelled once the bridge accepted it
}
#: Kinds that must have exactly one remote job (the others may have none).
DISPATCHED_KINDS = ("ok", "ce-fail", "cancel-running")

_TERMINAL_EVENTS = ("JobCompleted", "JobFailed", "JobCancelled", "JobExpired")
_STATUS_EVENTS = {
    "JobAccepted": Status.ACCEPTED,
    "JobRunning": Status.RUNNING,
    "JobCompleted": Status.COMPLETED,
    "JobFailed": Status.FAILED,
    "JobCancelled": Status.CANCELLED,
    "JobExpired": Status.EXPIRED,
}
_INVALID_TRANSITION = Web3.keccak(text="InvalidTransition(uint256,uint8,uint8)")[:4]


def fault_seed(test: str) -> int:
    """The seed of ``test``'s random schedule: ``$CE_FAULT_SEED`` or a fresh one; printed."""
    given = os.environ.get("CE_FAULT_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"\n{test}: CE_FAULT_SEED={seed}{' (from the environment)' if given else ''}")
    return seed


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    between: Callable[[], object] | None = None,
) -> float:
    """Polls ``condition`` until it holds; returns the seconds it took.

    Args:
        condition: checked every ``interval`` seconds.
        timeout: seconds before the test fails naming ``what``.
        between: called between two checks (e.g. to mine a block or send due cancellations).

    Raises:
        AssertionError: the condition did not hold in time.
    """
    started = time.monotonic()
    wait_until(condition, timeout, interval, what, between=between, error=AssertionError)
    return time.monotonic() - started


def bridge_round(bridge: Bridge) -> None:
    """One round of each of an in-process bridge's loops, in their order: scan, work, write
    (for tests that drive a ``Bridge`` by hand, e.g. as ``wait_for``'s ``between``)."""
    bridge.scan_once()
    bridge.work_once()  # never raises for one job's error
    bridge.tx_once()


# ---------------------------------------------------------------------------- the database

#: ``CE_FAULTS_DB=postgresql`` runs the suite's bridges on PostgreSQL (a database of each test's
#: own on 127.0.0.1:5432, dropped afterwards) instead of a SQLite file.
FAULTS_DB = os.environ.get("CE_FAULTS_DB", "sqlite").strip().lower()


@contextlib.contextmanager
def fault_database(tmp_path: Path, backend: str | None = None) -> Iterator[str]:
    """The database URL of one fault test: a SQLite file in ``tmp_path``, or a fresh PostgreSQL
    database (``backend`` "postgresql", default ``$CE_FAULTS_DB``) dropped on exit."""
    backend = backend or FAULTS_DB
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    assert backend == "postgresql", f"CE_FAULTS_DB must be sqlite or postgresql, not {backend!r}"
    from tests.pg import postgres_database

    with postgres_database("ce_bridge_faults") as url:
        yield url


# ---------------------------------------------------------------------------- the bridge process


def bridge_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The environment for ``ce-bridge run``: this process's, minus any ``BRIDGE_*``, plus the
    ``BRIDGE_*`` variables of ``settings`` with ``overrides`` (field names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    values: dict[str, object] = {
        name: getattr(settings, name) for name in type(settings).model_fields
    }
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"BRIDGE_{name.upper()}"] = str(value)
    return env


class BridgeProcess:
    """``ce-bridge run`` as a subprocess (its own process group), restartable.

    Its output is appended to ``log_path``; ``tail()`` shows the end of it for a failure message.
    """

    def __init__(self, settings: Settings, log_path: Path, **overrides: object) -> None:
        self.env = bridge_env(settings, **overrides)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0  # where the current start's output begins in log_path

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the running process, or None."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Starts ``ce-bridge run`` (the previous process must be gone)."""
        assert not self.running, "the bridge is already running"
        with self.log_path.open("ab") as out:
            self._log_offset = out.tell()
            out.write(f"\n===== start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from bridge.cli import main; main()", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def started(self) -> bool:
        """Whether the current start (not an earlier one in the same log) logged that it runs."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b"bridge running" in log.read()

    def kill(self) -> None:
        """SIGKILLs the process and its group (a crash) and reaps it."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> tuple[float, int]:
        """Sends SIGTERM to the bridge and waits for it to exit.

        Returns:
            The seconds it took to exit and its exit status.

        Raises:
            AssertionError: it did not exit within ``timeout`` (it is then killed).
        """
        process = self._process
        assert process is not None and process.poll() is None, "the bridge is not running"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the bridge did not stop within {timeout}s of SIGTERM") from None
        elapsed = time.monotonic() - started
        self._process = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left behind in its group
        return elapsed, code

    def close(self) -> None:
        """Kills the process group if it is still there (for ``finally`` blocks)."""
        self.kill()

    def tail(self, lines: int = 60) -> str:
        """The last lines of the bridge's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------- workload


def job_spec(kind: str, index: int, *, salt: str = "") -> JobSpec:
    """A small spec for a job of ``kind`` (see ``EXPECTED``); ``index`` makes it unique."""
    app = "charityengine:wolframengine"
    command = f"echo {kind} {index}{salt} > output/out.txt"
    if kind == "ce-fail":
        command = f"run {index}{salt} && {FAIL_MARKER}"
    elif kind in ("cancel-early", "cancel-running"):
        app = NEVER_FINISHES
    elif kind == "outage":
        app = OUTAGE_APP
    elif kind == "never":
        app = NEVER_FINISHES
    return JobSpec(
        app=app,
        command_line=command,
        specs=Resources(vcpus=1, ram=256, disk=256),
        max_hours=1,
        input_files=(InputFile("in.txt", "https://example.org/ce-bridge/faults/in.txt"),),
    )


@dataclass
class Submitted:
    """One job the test submitted."""

    job_id: int
    kind: str
    payment: int
    requester: str
    tx_hash: str
    block: int
    cancel_sent: bool = False

    @property
    def expected(self) -> Status:
        """The on-chain status it must end in."""
        return EXPECTED.get(self.kind, Status.FAILED)


@dataclass
class Workload:
    """Submits jobs from the stack's user and cancels the ones meant to be cancelled."""

    stack: LocalStack
    jobs: list[Submitted] = field(default_factory=list)
    _count: int = 0

    def submit(self, kinds: Iterable[str], *, timeout: float = 60.0) -> list[Submitted]:
        """Submits one job per kind (all sent before waiting for any receipt); returns them."""
        escrow = self.stack.escrow
        user = self.stack.roles.user
        sent: list[tuple[str, int, bytes]] = []
        for kind in kinds:
            spec = job_spec(kind, self._count)
            self._count += 1
            price = int(escrow.functions.quote(spec.to_abi(), 0).call())
            params: TxParams = {"from": user, "value": Wei(price), "gas": 400_000}
            tx_hash: bytes = escrow.functions.submitJob(spec.to_abi(), 0).transact(params)
            sent.append((kind, price, bytes(tx_hash)))
        new: list[Submitted] = []
        for kind, price, tx_hash in sent:
            receipt = self.stack.w3.eth.wait_for_transaction_receipt(
                Hash32(tx_hash), timeout=timeout
            )
            assert receipt["status"] == 1, f"submitJob reverted: 0x{tx_hash.hex()}"
            (event,) = escrow.events.JobSubmitted().process_receipt(receipt)
            new.append(
                Submitted(
                    job_id=int(event["args"]["jobId"]),
                    kind=kind,
                    payment=price,
                    requester=user,
                    tx_hash="0x" + tx_hash.hex(),
                    block=int(receipt["blockNumber"]),
                )
            )
        self.jobs.extend(new)
        return new

    def status(self, job_id: int) -> Status:
        """The job's on-chain status."""
        return Status(self.stack.escrow.functions.getJob(job_id).call()[1])

    def send_due_cancellations(self) -> int:
        """Cancels ``cancel-early`` jobs at once and ``cancel-running`` ones once accepted."""
        sent: list[tuple[Submitted, Any]] = []
        for job in self.jobs:
            if job.cancel_sent or job.kind not in ("cancel-early", "cancel-running"):
                continue
            status = self.status(job.job_id)
            if job.kind == "cancel-running" and status < Status.ACCEPTED:
                continue
            tx = None
            if not status.is_terminal:
                fn = self.stack.escrow.functions.cancelJob(job.job_id)
                tx = fn.transact({"from": job.requester, "gas": 200_000})
            sent.append((job, tx))
        for job, tx in sent:  # all sent first: one block's wait, not one per cancellation
            if tx is not None:
                receipt = self.stack.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
                assert receipt["status"] == 1, f"cancelJob({job.job_id}) reverted"
            job.cancel_sent = True
        return len(sent)

    def all_terminal(self) -> bool:
        """Every submitted job is terminal on-chain (and every cancellation was sent)."""
        self.send_due_cancellations()
        return all(self.status(j.job_id).is_terminal for j in self.jobs)

    def not_terminal(self) -> list[tuple[int, str, str]]:
        """(job id, kind, on-chain status) of every job not yet terminal: for failure messages."""
        out = []
        for j in self.jobs:
            status = self.status(j.job_id)
            if not status.is_terminal:
                out.append((j.job_id, j.kind, status.name))
        return out

    def converge(self, timeout: float = 240.0) -> float:
        """Waits until every job is terminal on-chain; returns the seconds it took.

        Raises:
            AssertionError: not in ``timeout`` s (the first 20 jobs still open are printed).
        """
        try:
            what = "every job to be terminal on-chain"
            return wait_for(self.all_terminal, timeout, what, interval=0.5)
        except AssertionError:
            print("not terminal:", self.not_terminal()[:20])
            raise


def mixed_kinds(count: int, rng: random.Random) -> list[str]:
    """``count`` kinds: 55% completing, 20% failing on CE, 12.5% each kind of cancellation."""
    n_fail = count * 20 // 100
    n_early = count * 125 // 1000
    n_running = count * 125 // 1000
    kinds = (
        ["ce-fail"] * n_fail
        + ["cancel-early"] * n_early
        + ["cancel-running"] * n_running
        + ["ok"] * (count - n_fail - n_early - n_running)
    )
    rng.shuffle(kinds)
    return kinds


# ---------------------------------------------------------------------------- emulator


def emulator_stats(stack: LocalStack) -> dict[str, Any]:
    """``GET /_emulator/stats``."""
    assert stack.emulator is not None
    stats: dict[str, Any] = httpx.get(stack.emulator.url + "_emulator/stats", timeout=10).json()
    return stats


def mixed_emulator(**extra: Any) -> EmulatorConfig:
    """The emulator of the mixed workloads: quick timings, commands containing ``FAIL_MARKER``
    fail and ``NEVER_FINISHES`` jobs never end; ``extra`` adds fault settings."""
    return EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=0.3,
        fail_commands=frozenset({FAIL_MARKER}),
        never_finish_apps=frozenset({NEVER_FINISHES}),
        **extra,
    )


def emulator_config(stack: LocalStack, **update: object) -> dict[str, Any]:
    """``POST /_emulator/config`` with ``update``; returns the new settings."""
    assert stack.emulator is not None
    response = httpx.post(stack.emulator.url + "_emulator/config", json=update, timeout=10)
    response.raise_for_status()
    config: dict[str, Any] = response.json()
    return config


def emulator_job(stack: LocalStack, remote_id: str) -> dict[str, Any]:
    """``GET /_emulator/jobs/{id}``: one remote job as the emulator sees it."""
    assert stack.emulator is not None
    job: dict[str, Any] = httpx.get(
        stack.emulator.url + f"_emulator/jobs/{remote_id}", timeout=10
    ).json()
    return job


def job_key(stack: LocalStack, job_id: int) -> str:
    """The ``Idempotency-Key`` of on-chain job ``job_id`` (generation 0)."""
    return f"{stack.w3.eth.chain_id}:{stack.escrow.address}:{job_id}"


# ---------------------------------------------------------------------------- audit


def writes_settled(database_url: str) -> bool:
    """Every update the bridge queued has a known outcome and no transaction is unconfirmed."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            pending = session.exec(
                select(Update.id).where(col(Update.applied).is_(None)).limit(1)
            ).first()
            unconfirmed = session.exec(
                select(ChainTx.id).where(col(ChainTx.state) == TxState.UNCONFIRMED).limit(1)
            ).first()
    finally:
        engine.dispose()
    return pending is None and unconfirmed is None


def writes_settled_and_logged(database_url: str, log_path: Path) -> bool:
    """``writes_settled``, and the bridge's log already holds the line of every confirmed write.

    A transaction is committed as confirmed a moment before its "confirmed in block" line is
    written; a test that reads the log from an offset waits for this so that the offset falls
    after the last line of the work done before it.
    """
    if not writes_settled(database_url):
        return False
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            confirmed = len(
                session.exec(
                    select(ChainTx.id).where(col(ChainTx.state) == TxState.CONFIRMED)
                ).all()
            )
    finally:
        engine.dispose()
    return log_path.read_text(errors="replace").count(" confirmed in block ") >= confirmed


@dataclass
class AuditReport:
    """What ``audit`` measured (printed by the tests)."""

    jobs: int
    by_status: dict[str, int]
    remote_jobs: int
    create_calls: int
    max_calls_per_key: int
    skips: dict[str, int]
    already_applied_skips: int
    operator_txs: int
    fatal_txs: int
    replaced_txs: int

    def line(self) -> str:
        """One line for the test output."""
        return (
            f"{self.jobs} jobs {self.by_status}; {self.remote_jobs} remote jobs from "
            f"{self.create_calls} job-create calls (at most {self.max_calls_per_key} per key); "
            f"UpdateSkipped: {self.skips} ({self.already_applied_skips} for a transition "
            f"already applied); operator txs {self.operator_txs} "
            f"({self.fatal_txs} fatal, {self.replaced_txs} fee-bumped)"
        )


def _events(escrow: Contract, name: str, from_block: int) -> list[Any]:
    return list(escrow.events[name]().get_logs(from_block=from_block, to_block="latest"))


def _order(entry: Any) -> tuple[int, int]:
    return (int(entry["blockNumber"]), int(entry["logIndex"]))


def _treasury_shares(w3: Web3, escrow: Contract, ids: set[int], from_block: int) -> dict[int, int]:
    """What the treasury keeps of each job of ``ids`` that was not completed, by the contract's
    money rules at the prices of its submission (the workloads never change them): a job cancelled
    once Running keeps the base fee and the vCPU-hour price of each hour started between
    ``JobRunning`` and ``JobCancelled`` (at most the job's hours); a failed job that asked for a
    callback keeps the callback fee. Every other refund is whole.

    Only the specs of jobs cancelled once running are decoded (a hostile spec that is not UTF-8,
    which web3 cannot decode, is never one of them: it never runs); a failed job's callback gas
    limit is read with ``getJob``, not from its event."""
    base_fee, vcpu_hour, per_callback_gas = escrow.functions.pricing().call()
    ran = {int(e["args"]["jobId"]): e for e in _events(escrow, "JobRunning", from_block)}
    cancelled_running = {
        int(e["args"]["jobId"]) for e in _events(escrow, "JobCancelled", from_block)
    } & set(ran)
    specs = {
        job_id: e["args"]["spec"]
        for job_id in cancelled_running
        for e in escrow.events.JobSubmitted().get_logs(
            from_block=0, argument_filters={"jobId": job_id}
        )
    }
    shares: dict[int, int] = {}
    for entry in _events(escrow, "JobCancelled", from_block):
        job_id = int(entry["args"]["jobId"])
        if job_id not in ids or job_id not in ran:
            continue
        started_at = int(w3.eth.get_block(ran[job_id]["blockNumber"])["timestamp"])
        ended_at = int(w3.eth.get_block(entry["blockNumber"])["timestamp"])
        spec = specs[job_id]
        hours = min((ended_at - started_at) // 3600 + 1, int(spec["maxHours"]))
        shares[job_id] = base_fee + vcpu_hour * int(spec["specs"]["vcpus"]) * hours
    for entry in _events(escrow, "JobFailed", from_block):
        job_id = int(entry["args"]["jobId"])
        if job_id not in ids:
            continue
        callback_gas = int(escrow.functions.getJob(job_id).call()[4])  # callbackGasLimit
        if callback_gas:
            shares[job_id] = per_callback_gas * callback_gas
    return shares


@dataclass(frozen=True)
class RunStart:
    """Where a run starts on-chain, for ``audit``: the first block whose events it reads, and the
    nonce of each operator key before the run."""

    block: int
    nonces: Mapping[str, int]

    @classmethod
    def of(cls, stack: LocalStack, operators: Sequence[str] = ()) -> RunStart:
        """The chain now, for ``operators`` (checksummed here; the stack's operator if none)."""
        keys = [Web3.to_checksum_address(a) for a in operators or [stack.roles.operator]]
        block = int(stack.w3.eth.block_number)
        return cls(block, {a: int(stack.w3.eth.get_transaction_count(a)) for a in keys})


def audit(
    stack: LocalStack,
    jobs: list[Submitted],
    *,
    database_url: str,
    start: RunStart,
    foreign_nonces: int = 0,
) -> AuditReport:
    """The end-of-run checks; asserts each guarantee and returns what it counted.

    - every job is terminal on-chain, in the status its kind calls for, with no payment left;
    - one terminal event per job; credits to the treasury and to each requester equal the
      payments of the completed and of the refunded jobs by the money rules (a job cancelled once
      Running pays its base fee and started hours, a failed one with a callback its callback
      fee), no payout doubled;
    - the contract's balance equals escrowed payments plus every credit;
    - the emulator made exactly one remote job per key, and one per job that had to run;
    - every item the bridge queued is in the outbox once per (job, status);
    - for each operator key of ``start``, its nonce equals the number of its mined
      transactions, and the bridge's confirmed transactions hold the nonces from its nonce at
      ``start`` up, without a gap (``foreign_nonces`` of them used by someone else with the key).
    """
    w3, escrow = stack.w3, stack.escrow
    from_block = start.block
    ids = {j.job_id for j in jobs}
    assert len(ids) == len(jobs), "a job id was reported twice"

    # 1. Terminal, as expected, nothing left escrowed.
    by_status: Counter[str] = Counter()
    for j in jobs:
        onchain = escrow.functions.getJob(j.job_id).call()
        status = Status(onchain[1])
        by_status[status.name.lower()] += 1
        assert status is j.expected, f"job {j.job_id} ({j.kind}) ended {status.name}"
        assert onchain[5] == 0, f"job {j.job_id} still holds {onchain[5]} wei"

    # 2. One terminal event per job; credits match payments exactly.
    terminal: Counter[int] = Counter()
    for name in _TERMINAL_EVENTS:
        for entry in _events(escrow, name, from_block):
            terminal[int(entry["args"]["jobId"])] += 1
    doubled = {j: n for j, n in terminal.items() if n != 1 and j in ids}
    assert not doubled, f"jobs with more than one terminal event: {doubled}"
    assert set(terminal) >= ids, f"jobs without a terminal event: {ids - set(terminal)}"
    treasury = Web3.to_checksum_address(str(escrow.functions.treasury().call()))
    credited: Counter[str] = Counter()
    for entry in _events(escrow, "Credited", from_block):
        credited[Web3.to_checksum_address(entry["args"]["account"])] += int(entry["args"]["amount"])
    kept = _treasury_shares(w3, escrow, ids, from_block)
    earned = sum(j.payment for j in jobs if j.expected is Status.COMPLETED) + sum(kept.values())
    assert credited[treasury] == earned, (
        f"treasury credited {credited[treasury]} wei, completed jobs paid {earned}"
    )
    for requester in {j.requester for j in jobs}:
        refunds = sum(
            j.payment - kept.get(j.job_id, 0)
            for j in jobs
            if j.requester == requester and j.expected != Status.COMPLETED
        )
        assert credited[requester] == refunds, (
            f"{requester} credited {credited[requester]} wei, refunds due {refunds}"
        )

    # 3. Balance == escrowed + credited.
    accounts = {treasury, *(j.requester for j in jobs)}
    credits = sum(int(escrow.functions.creditOf(a).call()) for a in accounts)
    escrowed = sum(int(escrow.functions.getJob(j).call()[5]) for j in ids)
    balance = int(w3.eth.get_balance(escrow.address))
    assert balance == escrowed + credits, f"balance {balance} != {escrowed} + {credits}"

    # 4. At most one remote job per key; exactly one per job that had to run; none left running.
    stats = emulator_stats(stack)
    keys = stats["by_key"]
    assert all(entry["jobs"] <= 1 for entry in keys.values()), {
        k: v for k, v in keys.items() if v["jobs"] > 1
    }
    for j in jobs:
        if j.kind in DISPATCHED_KINDS:
            entry = keys.get(job_key(stack, j.job_id))
            assert entry and entry["jobs"] == 1, f"job {j.job_id} ({j.kind}) never ran on CE"
    remote_ids = {r: key for key, entry in keys.items() for r in entry["remoteJobIds"]}
    assert stats["jobs"] == len(remote_ids), "a remote job was created without an Idempotency-Key"
    unfinished = [
        (key, r)
        for r, key in remote_ids.items()
        if not is_terminal(emulator_job(stack, r)["status"])
    ]
    kinds = {job_key(stack, j.job_id): j.kind for j in jobs}
    running = [(key, kinds.get(key), r) for key, r in unfinished]
    assert not running, f"remote jobs left running after their job ended: {running}"

    # 5. UpdateSkipped: counted, the ones for a transition already applied told apart.
    reached: dict[int, list[tuple[tuple[int, int], Status]]] = {}
    for name, status in _STATUS_EVENTS.items():
        for entry in _events(escrow, name, from_block):
            reached.setdefault(int(entry["args"]["jobId"]), []).append((_order(entry), status))
    skips: Counter[str] = Counter()
    already = 0
    for entry in _events(escrow, "UpdateSkipped", from_block):
        job_id, skipped_status = int(entry["args"]["jobId"]), int(entry["args"]["status"])
        reason = bytes(entry["args"]["reason"])
        skips[error_name(reason, list(escrow.abi))] += 1
        before = [s for at, s in reached.get(job_id, []) if at < _order(entry)]
        if reason == _INVALID_TRANSITION and int(skipped_status) in {int(s) for s in before}:
            already += 1

    # 6. The outbox: each (job, status) queued once.
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            queued = Counter((u.job_id, u.status) for u in session.exec(select(Update)).all())
            txs = list(session.exec(select(ChainTx).order_by(col(ChainTx.nonce))).all())
    finally:
        engine.dispose()
    twice = {k: n for k, n in queued.items() if n > 1}
    assert not twice, f"updates queued more than once: {twice}"

    # 7. Nonces, per operator key: chain count == mined txs; the stored txs cover them with no
    # gap.
    mined_by: Counter[str] = Counter()
    for number in range(from_block, int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        # full_transactions=True: the block holds TxData (the stub's union cannot say so)
        for tx in cast(Sequence[TxData], block["transactions"]):
            sender = tx["from"]
            if sender in start.nonces:
                mined_by[sender] += 1
    mined = fatal_count = replaced = 0
    for operator, nonce_before in start.nonces.items():
        checked = _check_nonces(w3, txs, operator, nonce_before, mined_by[operator], foreign_nonces)
        mined += mined_by[operator]
        fatal_count += checked[0]
        replaced += checked[1]

    return AuditReport(
        jobs=len(jobs),
        by_status=dict(by_status),
        remote_jobs=int(stats["jobs"]),
        create_calls=int(stats["create_calls"]),
        max_calls_per_key=max((int(v["calls"]) for v in keys.values()), default=0),
        skips=dict(skips),
        already_applied_skips=already,
        operator_txs=mined,
        fatal_txs=fatal_count,
        replaced_txs=replaced,
    )


def _check_nonces(
    w3: Web3,
    txs: list[ChainTx],
    operator: str,
    operator_nonce_before: int,
    mined: int,
    foreign_nonces: int,
) -> tuple[int, int]:
    """Asserts one key's nonces: its chain count == its ``mined`` txs since the start, none of
    its stored txs unconfirmed, and its confirmed txs cover the nonces without a gap. Returns
    (fatal txs, fee-bumped txs) of the key."""
    chain_nonce = int(w3.eth.get_transaction_count(Web3.to_checksum_address(operator)))
    assert chain_nonce - operator_nonce_before == mined, (
        f"{operator}: nonce {chain_nonce} (from {operator_nonce_before}) but {mined} mined txs"
    )
    ours = [t for t in txs if t.sender == operator]
    assert all(t.state != TxState.UNCONFIRMED for t in ours), (
        f"{operator}: transactions left unconfirmed"
    )
    confirmed = sorted(t.nonce for t in ours if t.state == TxState.CONFIRMED)
    fatal = [t for t in ours if t.state == TxState.FATAL]
    assert len(confirmed) == len(set(confirmed)), "two confirmed transactions share a nonce"
    assert len(confirmed) + foreign_nonces == chain_nonce - operator_nonce_before, (
        f"{len(confirmed)} confirmed txs + {foreign_nonces} foreign for "
        f"{chain_nonce - operator_nonce_before} nonces"
    )
    used = set(confirmed) | {t.nonce for t in fatal}
    gaps = set(range(operator_nonce_before, chain_nonce)) - used
    assert len(gaps) <= foreign_nonces, f"{operator}: nonces with no tx stored: {sorted(gaps)}"
    for t in ours:
        if t.state == TxState.CONFIRMED:
            receipt = w3.eth.get_transaction_receipt(HexStr(t.tx_hash or ""))
            assert int(receipt["status"]) == 1 and t.nonce == int(
                w3.eth.get_transaction(HexStr(t.tx_hash or ""))["nonce"]
            )
    return len(fatal), sum(1 for t in ours if t.attempt > 0)

"""``ce-bridge demo``: the whole path of a job, live, on a local chain.

Starts Anvil (1-second blocks), the CE emulator and the bridge (2 confirmations), submits jobs of
four kinds from a user account — a plain one, one through a consumer contract with a callback,
one that CE fails, one cancelled before it runs — shows their on-chain status live, and ends with
a table of each job's status, result hash and whether that hash matches the output files
downloaded independently from CE. Everything it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bridge.chain.spec import InputFile, JobSpec, Resources, Status
from bridge.devstack import LocalStack
from bridge.remote.emulator import EmulatorConfig
from bridge.results import result_hash
from bridge.waiting import wait_until

FAIL_MARKER = "exit 1"
_STYLE = {
    Status.COMPLETED: "green",
    Status.FAILED: "red",
    Status.CANCELLED: "yellow",
    Status.EXPIRED: "magenta",
}


@dataclass
class DemoJob:
    """One submitted demo job."""

    job_id: int
    kind: str
    expected: Status
    via_consumer: bool = False


def demo_spec(command: str) -> JobSpec:
    """The demo's job spec with ``command``."""
    return JobSpec(
        app="charityengine:wolframengine",
        command_line=command,
        specs=Resources(vcpus=2, ram=512, disk=512),
        max_hours=1,
        input_files=(InputFile("in.txt", "https://example.org/ce-bridge/demo/in.txt"),),
    )


def _submit(stack: LocalStack, spec: JobSpec, callback_gas: int = 0) -> int:
    user = {"from": stack.roles.user}
    price = stack.escrow.functions.quote(spec.to_abi(), callback_gas).call()
    if callback_gas:
        fn: Any = stack.consumer.functions.submit(spec.to_abi(), callback_gas)
    else:
        fn = stack.escrow.functions.submitJob(spec.to_abi(), 0)
    job_id = int(fn.call({**user, "value": price}))
    receipt = stack.w3.eth.wait_for_transaction_receipt(fn.transact({**user, "value": price}))
    if receipt["status"] != 1:
        raise RuntimeError(f"submitting job {job_id} reverted")
    return job_id


def submit_demo_jobs(stack: LocalStack, per_kind: int = 1) -> list[DemoJob]:
    """Submits ``per_kind`` jobs of each of the four kinds; returns them."""
    jobs: list[DemoJob] = []
    for i in range(per_kind):
        command = f'math -run "Print[{i}+2]" > output/out.txt'
        jobs.append(DemoJob(_submit(stack, demo_spec(command)), "plain", Status.COMPLETED))
        jobs.append(
            DemoJob(
                _submit(stack, demo_spec(command), callback_gas=100_000),
                "callback",
                Status.COMPLETED,
                via_consumer=True,
            )
        )
        fail_command = f"math -run 'Print[{i}]' && {FAIL_MARKER}"
        jobs.append(DemoJob(_submit(stack, demo_spec(fail_command)), "CE fails", Status.FAILED))
        cancel_id = _submit(stack, demo_spec(command))
        tx = stack.escrow.functions.cancelJob(cancel_id).transact({"from": stack.roles.user})
        stack.w3.eth.wait_for_transaction_receipt(tx)
        jobs.append(DemoJob(cancel_id, "cancelled", Status.CANCELLED))
    return jobs


def onchain(stack: LocalStack, job_id: int) -> tuple[Status, bytes]:
    """A job's on-chain status and result hash."""
    job = stack.escrow.functions.getJob(job_id).call()
    return Status(job[1]), bytes(job[6])


def independent_hash(stack: LocalStack, remote_job_id: str) -> bytes | None:
    """The result hash recomputed from the files as CE serves them (not the bridge's copy)."""
    assert stack.emulator is not None
    base = stack.emulator.base_url
    body = {
        "authenticator": stack.settings.ce_authenticator.get_secret_value(),
        "jobId": remote_job_id,
    }
    with httpx.Client(timeout=10) as http:
        status = http.post(base + "job-status", json=body).json()
        files = {f["filename"]: http.get(f["url"]).content for f in status.get("outputFiles") or []}
    return result_hash(files) if files else None


def _bridge_rows(stack: LocalStack) -> dict[int, tuple[str | None, str, str | None]]:
    """Job id -> (remote job id, bridge state, failure reason), from the bridge's database."""
    from sqlmodel import Session, select

    from bridge.store.models import Job

    assert stack.bridge is not None
    with Session(stack.bridge.db) as session:
        rows = session.exec(select(Job.job_id, Job.remote_job_id, Job.state, Job.reason)).all()
    return {job_id: (remote, state, reason) for job_id, remote, state, reason in rows}


def _remote_ids(stack: LocalStack) -> dict[int, str]:
    return {job_id: row[0] for job_id, row in _bridge_rows(stack).items() if row[0]}


def _table(stack: LocalStack, jobs: list[DemoJob], final: bool) -> Table:
    # Fits an 80-column terminal whole (tests/integration/test_demo.py): no vertical rules,
    # short headers, a failure's reason under the final table (``run_demo``), not in a cell.
    table = Table(
        title="ce-bridge demo: jobs on-chain" + (" (final)" if final else ""),
        caption="verified: the result hash recomputed from the files CE wrote" if final else None,
        box=box.SIMPLE_HEAD,
    )
    for column in ("job", "kind", "on-chain", "bridge", "result hash", "verified", "callback"):
        table.add_column(column, no_wrap=True)
    rows = _bridge_rows(stack)
    remote = _remote_ids(stack) if final else {}
    for job in jobs:
        status, digest = onchain(stack, job.job_id)
        style = _STYLE.get(status, "cyan")
        matches = ""
        callback = ""
        if final and status is Status.COMPLETED and job.job_id in remote:
            ok = independent_hash(stack, remote[job.job_id]) == digest
            matches = "[green]yes[/]" if ok else "[red]NO[/]"
        if job.via_consumer:
            got = bytes(stack.consumer.functions.results(job.job_id).call())
            callback = "received" if got != b"\x00" * 32 else "-"
        _, bridge_state, _ = rows.get(job.job_id, (None, "unseen", None))
        table.add_row(
            str(job.job_id),
            job.kind,
            f"[{style}]{status.name.lower()}[/]",
            bridge_state,
            "0x" + digest.hex()[:10] + "…" if digest != b"\x00" * 32 else "-",
            matches,
            callback,
        )
    return table


@contextlib.contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """An event that Ctrl-C (or SIGTERM) sets while the block runs, instead of raising
    ``KeyboardInterrupt`` wherever the main thread is: in the middle of the console's print,
    say, inside a lock the console or the logging module then never releases, so that every
    thread printing while the stack stops would hang on it. The previous handlers are back
    after the block (a second Ctrl-C during the stop interrupts it as usual)."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in signals}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _until_interrupted(console: Console, message: str) -> None:
    """Prints ``message`` and blocks until Ctrl-C (or SIGTERM); the signal is taken as an
    event from before the message is printed (see ``_interruptible``)."""
    with _interruptible() as stop:
        console.print(message)
        while not stop.wait(1.0):
            pass


def _demo_emulator(seconds: tuple[float, float, float]) -> EmulatorConfig:
    """The demo's emulator: provisioning, downloading and running seconds; the fail marker."""
    provisioning, downloading, running = seconds
    return EmulatorConfig(
        provisioning_seconds=provisioning,
        downloading_seconds=downloading,
        running_seconds=running,
        fail_commands=frozenset({FAIL_MARKER}),
    )


def run_demo(
    console: Console, *, jobs_per_kind: int = 1, keep_running: bool = False, timeout: float = 180.0
) -> bool:
    """Runs the demo; True when every job ended as expected and every hash matched."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = _demo_emulator((0.5, 0.5, 2.0))
    with tempfile.TemporaryDirectory(prefix="ce-bridge-demo-") as tmp:
        console.print("[bold]Starting Anvil, the CE emulator and the bridge…[/]")
        with (
            LocalStack(Path(tmp), block_time=1.0, confirmations=2, emulator_config=config) as stack,
            _interruptible() as stop,
        ):
            assert stack.anvil is not None and stack.emulator is not None

            def ended(predicate: Callable[[], bool]) -> Callable[[], bool]:
                """``predicate``, after a Ctrl-C check: the interrupt is raised here, between
                two polls, never inside the live display's or the console's lock."""

                def check() -> bool:
                    if stop.is_set():
                        raise KeyboardInterrupt
                    return predicate()

                return check

            console.print(f"  chain    {stack.anvil.url} (1 s blocks, 2 confirmations)")
            console.print(f"  CE       {stack.emulator.base_url}")
            console.print(f"  escrow   {stack.escrow.address}")
            console.print(f"  consumer {stack.consumer.address}")
            jobs = submit_demo_jobs(stack, jobs_per_kind)
            console.print(f"Submitted {len(jobs)} jobs from {stack.roles.user}")
            # A wait that times out is not an error here: the final table shows what did not end.
            with (
                Live(_table(stack, jobs, False), console=console, refresh_per_second=4) as live,
                contextlib.suppress(TimeoutError),
            ):
                wait_until(
                    ended(lambda: all(onchain(stack, j.job_id)[0].is_terminal for j in jobs)),
                    timeout,
                    0.5,
                    "every demo job to end on-chain",
                    between=lambda: live.update(_table(stack, jobs, False)),
                )
            # The bridge marks a job settled once its terminal event has 2 confirmations.
            with contextlib.suppress(TimeoutError):
                wait_until(
                    ended(lambda: all(row[1] == "settled" for row in _bridge_rows(stack).values())),
                    15,
                    0.5,
                    "every demo job to be settled",
                )
            final = _table(stack, jobs, True)
            console.print(final)
            for job_id, (_, _, reason) in sorted(_bridge_rows(stack).items()):
                if reason:
                    console.print(f"  job {job_id}: {reason}", highlight=False, markup=False)
            ok = _verdict(stack, jobs, console)
            if keep_running:
                _until_interrupted(console, "Running until Ctrl-C…")
    return ok


def _verdict(stack: LocalStack, jobs: list[DemoJob], console: Console) -> bool:
    remote = _remote_ids(stack)
    problems = []
    for job in jobs:
        status, digest = onchain(stack, job.job_id)
        if status is not job.expected:
            problems.append(
                f"job {job.job_id} ({job.kind}) is {status.name}, expected {job.expected.name}"
            )
        elif status is Status.COMPLETED and independent_hash(stack, remote[job.job_id]) != digest:
            problems.append(f"job {job.job_id}: on-chain hash does not match the files")
    for line in problems:
        console.print(f"[red]✗[/] {line}")
    if not problems:
        console.print(
            "[green]✓ every job ended as expected and every result hash matches its files[/]"
        )
    return not problems


def serve_demo(console: Console, *, port: int = 8080, cors_origins: str = "") -> None:
    """Keeps the demo stack up for a browser: Anvil, the emulator and the bridge with its API and
    the dapp at ``/app/``, until Ctrl-C (or SIGTERM), which stops everything it started.

    Prints the page's URL, the chain's RPC URL and id, the contract, and a funded development key
    to import into a wallet (Anvil's well-known account 2: never use it on a real network).

    Args:
        port: the bridge API's port (0: a free one).
        cors_origins: ``BRIDGE_CORS_ORIGINS`` for pages served from elsewhere.
    """
    from bridge.devchain import free_port

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = _demo_emulator((1.0, 1.0, 3.0))
    with tempfile.TemporaryDirectory(prefix="ce-bridge-demo-") as tmp:
        console.print("[bold]Starting Anvil, the CE emulator and the bridge…[/]")
        settings = {"api_port": port or free_port(), "cors_origins": cors_origins}
        with LocalStack(
            Path(tmp), block_time=1.0, confirmations=1, emulator_config=config, settings=settings
        ) as stack:
            assert stack.anvil is not None
            chain_id = stack.w3.eth.chain_id
            console.print(f"  dapp       [bold]{stack.api_url}/app/[/]")
            console.print(f"  RPC URL    {stack.anvil.url}   chain id {chain_id}")
            console.print(f"  contract   {stack.escrow.address}")
            console.print(f"  bridge API {stack.api_url}   CE emulator {stack.emulator_url}")
            console.print(
                f"  wallet     import this funded development key: {stack.roles.keys[2]}\n"
                f"             (account {stack.roles.user}; Anvil's public test key, never use it "
                "on a real network)"
            )
            _until_interrupted(
                console,
                f"Add the network to your wallet (RPC {stack.anvil.url}, chain id {chain_id}), "
                "open the dapp, connect. Ctrl-C stops everything.",
            )
    console.print("stopped: Anvil, the emulator and the bridge")

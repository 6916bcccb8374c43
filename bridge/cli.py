"""The ``ce-bridge`` command line (Typer + Rich). Thin commands that call services.

A user mistake (bad address, missing key, unreachable node, a revert) ends with one line naming
the problem and exit status 1, never a traceback. Secrets are never printed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from web3 import Web3

from bridge.errors import BridgeError, ConfigError

app = typer.Typer(
    help="Run Charity Engine compute jobs paid for on Ethereum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

RpcOpt = Annotated[str, typer.Option(envvar="BRIDGE_RPC_URL", help="JSON-RPC URL of the node")]
ContractOpt = Annotated[
    str, typer.Option(envvar="BRIDGE_CONTRACT_ADDRESS", help="JobEscrow address")
]
KeyOpt = Annotated[
    str,
    typer.Option(
        envvar="BRIDGE_USER_KEY",
        help="private key that signs (env BRIDGE_USER_KEY)",
        show_default=False,
    ),
]


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _setup_logging(json_logs: bool = False, level: int = logging.INFO) -> None:
    from bridge.logs import configure_logging

    configure_logging(json_logs=json_logs, level=level)


@app.command()
def run() -> None:
    """Run the bridge: scan the chain, run jobs on CE, write results back (config: BRIDGE_*)."""
    from bridge.config import load_settings
    from bridge.engine.service import Bridge

    settings = load_settings()
    _setup_logging(settings.log_json)
    bridge = Bridge.from_settings(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    bridge.start()
    logging.getLogger("bridge").info(
        "bridge running for %s as operator %s", settings.contract_address, settings.operator_address
    )
    stop.wait()
    bridge.stop()


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8090,
    data_dir: Annotated[Path | None, typer.Option(help="where output files go")] = None,
    running_seconds: Annotated[float, typer.Option(help="time a job runs")] = 1.0,
    queue_seconds: Annotated[float, typer.Option(help="time in Provisioning+Downloading")] = 1.0,
    fail_command: Annotated[
        list[str] | None, typer.Option(help="a job whose command contains this fails")
    ] = None,
) -> None:
    """Serve the CE emulator (the Remote API under /remotejobs/v2/) until interrupted."""
    from bridge.remote.emulator import EmulatorConfig
    from bridge.remote.server import serve_emulator

    config = EmulatorConfig(
        data_dir=data_dir,
        provisioning_seconds=queue_seconds / 2,
        downloading_seconds=queue_seconds / 2,
        running_seconds=running_seconds,
        fail_commands=frozenset(fail_command or ()),
    )
    console.print(f"CE emulator on http://{host}:{port}/remotejobs/v2/")
    serve_emulator(host, port, config)


@app.command()
def deploy(
    rpc_url: RpcOpt,
    key: KeyOpt,
    operator: Annotated[
        list[str] | None, typer.Option(help="address to grant OPERATOR_ROLE (repeatable)")
    ] = None,
    treasury: Annotated[str | None, typer.Option(help="treasury address")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Deploy JobEscrow with the signing account as admin."""
    from eth_account import Account

    from bridge.chain.deploy import connect, deploy_escrow

    admin = _account(key)
    w3 = connect(rpc_url, [key])
    _check_rpc(w3, rpc_url)
    for address in [*(operator or []), *([treasury] if treasury else [])]:
        if not Web3.is_address(address):
            _fail(f"not an Ethereum address: {address}")
    address = deploy_escrow(w3, admin, operators=operator or [], treasury=treasury)
    block = int(w3.eth.block_number)
    if as_json:
        print(json.dumps({"address": address, "chainId": int(w3.eth.chain_id), "block": block}))
    else:
        console.print(f"JobEscrow deployed at [bold]{address}[/] (block {block})")
    del Account


@app.command()
def submit(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    app_name: Annotated[str, typer.Option("--app", help="CE app")] = "charityengine:wolframengine",
    command: Annotated[
        str, typer.Option(help="command line")
    ] = 'math -run "Print[2+2]" > output/out.txt',
    vcpus: int = 1,
    ram: int = 512,
    disk: int = 512,
    hours: int = 1,
    input_file: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of an input file (repeatable)")
    ] = None,
    callback_gas: Annotated[int, typer.Option(help="callback gas limit (0: none)")] = 0,
    wait: Annotated[bool, typer.Option(help="wait until the job is terminal")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
) -> None:
    """Submit a job, paying its quote; wait for it unless --no-wait."""
    from bridge.chain.deploy import connect, escrow
    from bridge.chain.spec import InputFile, JobSpec, Resources, Status

    files = []
    for item in input_file or []:
        name, sep, url = item.partition("=")
        if not sep:
            _fail(f"--input-file must be NAME=URL, got {item!r}")
        files.append(InputFile(name, url))
    spec = JobSpec(app_name, command, Resources(vcpus, ram, disk), hours, tuple(files))
    sender = _account(key)
    w3 = connect(rpc_url, [key])
    _check_rpc(w3, rpc_url)
    c = escrow(w3, _address(contract))
    price = _call(lambda: c.functions.quote(spec.to_abi(), callback_gas).call(), c.abi)
    job_id = _call(
        lambda: c.functions.submitJob(spec.to_abi(), callback_gas).call(
            {"from": sender, "value": price}
        ),
        c.abi,
    )
    tx = c.functions.submitJob(spec.to_abi(), callback_gas).transact(
        {"from": sender, "value": price}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=120)
    if receipt["status"] != 1:
        _fail(f"submitJob reverted (tx {tx.hex()})")
    console.print(f"job [bold]{job_id}[/] submitted, paid {Web3.from_wei(price, 'ether')} ETH")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    status = Status.SUBMITTED
    with console.status("waiting") as spinner:
        while time.monotonic() < deadline:
            job = c.functions.getJob(job_id).call()
            status = Status(job[1])
            spinner.update(f"job {job_id}: {status.name.lower()}")
            if status.is_terminal:
                break
            time.sleep(1.0)
    job = c.functions.getJob(job_id).call()
    console.print(f"job {job_id}: [bold]{Status(job[1]).name.lower()}[/]")
    if Status(job[1]) is Status.COMPLETED:
        console.print(f"result hash 0x{bytes(job[6]).hex()}")
    if not status.is_terminal:
        _fail(f"job {job_id} not finished after {timeout:.0f}s")


@app.command()
def status(job_id: int, rpc_url: RpcOpt, contract: ContractOpt) -> None:
    """Show a job's on-chain state."""
    from bridge.chain.deploy import connect, escrow
    from bridge.chain.spec import Status

    w3 = connect(rpc_url)
    _check_rpc(w3, rpc_url)
    c = escrow(w3, _address(contract))
    job = c.functions.getJob(job_id).call()
    if job[0] == "0x" + "00" * 20 or Status(job[1]) is Status.NONE:
        _fail(f"job {job_id} does not exist")
    print(
        json.dumps(
            {
                "jobId": job_id,
                "requester": job[0],
                "status": Status(job[1]).name.lower(),
                "cancelRequested": job[2],
                "deadline": job[3],
                "callbackGasLimit": job[4],
                "paymentWei": str(job[5]),
                "resultHash": "0x" + bytes(job[6]).hex(),
            },
            indent=2,
        )
    )


@app.command()
def demo(
    jobs: Annotated[int, typer.Option(help="jobs of each kind")] = 1,
    keep_running: Annotated[bool, typer.Option(help="keep everything up until Ctrl-C")] = False,
) -> None:
    """Start Anvil, the CE emulator and the bridge; submit jobs; show them finish on-chain."""
    from bridge.demo import run_demo

    ok = run_demo(console, jobs_per_kind=jobs, keep_running=keep_running)
    if not ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- helpers


def _account(key: str) -> str:
    from eth_account import Account

    try:
        return str(Account.from_key(key).address)
    except Exception:
        _fail("the signing key is not a valid private key (32 bytes of hex)")
        raise


def _address(value: str) -> str:
    if not Web3.is_address(value):
        _fail(f"not an Ethereum address: {value}")
    return Web3.to_checksum_address(value)


def _check_rpc(w3: Web3, url: str) -> None:
    try:
        w3.eth.chain_id  # noqa: B018 - the call is the check
    except Exception:
        _fail(f"cannot reach the JSON-RPC node at {url}")


def _call(fn: Any, abi: Any) -> Any:
    """Runs a contract call; a revert ends the command with the decoded custom error."""
    from web3.exceptions import ContractCustomError, ContractLogicError

    try:
        return fn()
    except ContractCustomError as exc:
        from bridge.chain.revert import decode_revert

        data = exc.data if isinstance(exc.data, str) else str(exc.message)
        _fail(str(decode_revert(bytes.fromhex(data.removeprefix("0x")), abi)))
    except ContractLogicError as exc:
        _fail(f"the contract reverted: {exc.message}")


def main() -> None:
    """Entry point: runs the app, turning bridge errors into one line and exit status 1."""
    try:
        app()
    except (BridgeError, ConfigError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)

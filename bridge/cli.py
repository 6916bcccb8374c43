"""The ``ce-bridge`` command line (Typer + Rich). Thin commands that call services.

A user mistake (bad address, missing key, unreachable node, a revert) ends with one line naming
the problem and exit status 1, never a traceback. Secrets are never printed.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from web3 import Web3

from bridge.errors import BridgeError, ConfigError


class _Typer(typer.Typer):
    """A Typer whose commands end a ``BridgeError`` with one line and exit status 1."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Any:
            @functools.wraps(fn)
            def friendly(*a: Any, **kw: Any) -> Any:
                try:
                    return fn(*a, **kw)
                except BridgeError as exc:
                    _fail(str(exc))

            return register(friendly)

        return decorator


class _OneLineErrors(TyperGroup):
    """Usage mistakes (a missing option, a bad value) end in one line too, exit status 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            # Without standalone mode, click returns the code of a ``typer.Exit`` instead of
            # exiting with it (commands themselves return None).
            code = super().main(*args, **kwargs)
            sys.exit(code if isinstance(code, int) else 0)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(130)
        except typer.TyperException as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                console.print(ctx.get_help())
                sys.exit(0)
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            sys.exit(getattr(exc, "exit_code", 2))


app = _Typer(
    cls=_OneLineErrors,
    help="Run Charity Engine compute jobs paid for on Ethereum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

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
def run(
    config: Annotated[Path | None, typer.Option(help="TOML config file (or BRIDGE_CONFIG)")] = None,
) -> None:
    """Run the bridge: scan the chain, run jobs on CE, write results back (config: BRIDGE_*).

    Serves the HTTP API (health, metrics, jobs, outputs, admin) on BRIDGE_API_HOST:BRIDGE_API_PORT
    in the same process.
    """
    from bridge.api import create_app, serve_api_in_thread
    from bridge.config import load_settings
    from bridge.engine.service import Bridge

    settings = load_settings(config)
    _setup_logging(settings.log_json)
    bridge = Bridge.from_settings(settings)
    api = serve_api_in_thread(create_app(settings, bridge), settings.api_host, settings.api_port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    bridge.start()
    logging.getLogger("bridge").info(
        "bridge running for %s as operator %s; API at %s",
        settings.contract_address,
        settings.operator_address,
        api.url,
    )
    stop.wait()
    api.stop()
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
    admin: Annotated[
        str | None, typer.Option(help="admin address to hand DEFAULT_ADMIN_ROLE to")
    ] = None,
    treasury: Annotated[str | None, typer.Option(help="treasury address")] = None,
    base_fee: Annotated[int | None, typer.Option(help="pricing: base fee, wei")] = None,
    price_per_vcpu_hour: Annotated[int | None, typer.Option(help="pricing: wei")] = None,
    price_per_callback_gas: Annotated[int | None, typer.Option(help="pricing: wei")] = None,
    limit: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE of a limit, e.g. maxVcpus=16")
    ] = None,
    grace: Annotated[int | None, typer.Option(help="deadline grace, seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Deploy JobEscrow; the signer is the admin until --admin hands the role over."""
    from bridge.chain.actions import EscrowClient
    from bridge.chain.deploy import connect, deploy_escrow

    signer = _account(key)
    for address in [*(operator or []), *(a for a in (treasury, admin) if a)]:
        _address(address)
    w3 = connect(rpc_url, [key])
    _check_rpc(w3, rpc_url)
    address = deploy_escrow(w3, signer, operators=operator or [], treasury=treasury)
    client = EscrowClient(rpc_url, address, key)
    if (
        base_fee is not None
        or price_per_vcpu_hour is not None
        or price_per_callback_gas is not None
    ):
        current = client.contract.functions.pricing().call()
        client.set_pricing(
            current[0] if base_fee is None else base_fee,
            current[1] if price_per_vcpu_hour is None else price_per_vcpu_hour,
            current[2] if price_per_callback_gas is None else price_per_callback_gas,
        )
    if limit or grace is not None:
        _apply_limits(client, limit or [], grace)
    if admin is not None and _address(admin) != signer:
        from bridge.chain.deploy import connect as _connect

        role = b"\x00" * 32
        tx = client.contract.functions.grantRole(role, _address(admin)).transact({"from": signer})
        _connect(rpc_url).eth.wait_for_transaction_receipt(tx)
        tx = client.contract.functions.renounceRole(role, signer).transact({"from": signer})
        client.w3.eth.wait_for_transaction_receipt(tx)
    block = int(w3.eth.block_number)
    if as_json:
        print(json.dumps({"address": address, "chainId": int(w3.eth.chain_id), "block": block}))
    else:
        console.print(f"JobEscrow deployed at [bold]{address}[/] (block {block})")


@app.command()
def submit(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    job_file: Annotated[
        Path | None, typer.Option(help="a JSON file in CE's job-create format")
    ] = None,
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
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 3600.0,
) -> None:
    """Submit a job (from flags or a CE job-create JSON file), paying its quote."""
    from bridge.chain.actions import EscrowClient, spec_from_ce_json
    from bridge.chain.spec import InputFile, JobSpec, Resources, Status

    if job_file is not None:
        try:
            spec = spec_from_ce_json(json.loads(job_file.read_text()))
        except (OSError, ValueError) as exc:
            _fail(f"cannot read {job_file}: {exc}")
    else:
        files = []
        for item in input_file or []:
            name, sep, url = item.partition("=")
            if not sep:
                _fail(f"--input-file must be NAME=URL, got {item!r}")
            files.append(InputFile(name, url))
        spec = JobSpec(app_name, command, Resources(vcpus, ram, disk), hours, tuple(files))
    client = EscrowClient(rpc_url, _address(contract), key)
    job_id, price = client.submit(spec, callback_gas)
    console.print(f"job [bold]{job_id}[/] submitted, paid {Web3.from_wei(price, 'ether')} ETH")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    job = client.job(job_id)
    with console.status(f"job {job_id}: submitted") as spinner:
        while time.monotonic() < deadline and not job.status.is_terminal:
            time.sleep(1.0)
            job = client.job(job_id)
            spinner.update(f"job {job_id}: {job.status.name.lower()}")
    console.print(f"job {job_id}: [bold]{job.status.name.lower()}[/]")
    if job.status is Status.COMPLETED:
        console.print(f"result hash 0x{job.result_hash.hex()}")
        uri = _result_uri(client, job_id)
        if uri:
            console.print(f"files at {uri}")
    elif job.status in (Status.FAILED, Status.CANCELLED, Status.EXPIRED):
        console.print(f"refund credited: withdraw with `ce-bridge withdraw` ({client.sender})")
    if not job.status.is_terminal:
        _fail(f"job {job_id} not finished after {timeout:.0f}s")


@app.command()
def status(job_id: int, rpc_url: RpcOpt, contract: ContractOpt) -> None:
    """Show a job's on-chain state as JSON."""
    from bridge.chain.actions import EscrowClient

    client = EscrowClient(rpc_url, _address(contract))
    data = client.job(job_id).to_json()
    uri = _result_uri(client, job_id)
    if uri:
        data["resultURI"] = uri
    print(json.dumps(data, indent=2))


@app.command()
def jobs(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    requester: Annotated[str | None, typer.Option(help="only this requester's jobs")] = None,
    state: Annotated[str | None, typer.Option("--status", help="only jobs in this status")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List jobs on-chain, newest first."""
    from rich.table import Table

    from bridge.chain.actions import EscrowClient
    from bridge.chain.spec import Status

    wanted = None
    if state is not None:
        try:
            wanted = Status[state.upper()]
        except KeyError:
            _fail(f"unknown status {state!r}: one of " + ", ".join(s.name.lower() for s in Status))
    client = EscrowClient(rpc_url, _address(contract))
    found = client.jobs(requester=_address(requester) if requester else None, status=wanted)
    if as_json:
        print(json.dumps([j.to_json() for j in found], indent=2))
        return
    table = Table()
    for column in ("job", "requester", "status", "payment (ETH)", "result hash"):
        table.add_column(column)
    for j in found:
        digest = "0x" + j.result_hash.hex()[:16] + "…" if any(j.result_hash) else "-"
        pay = str(Web3.from_wei(j.payment, "ether"))
        table.add_row(str(j.job_id), j.requester, j.status.name.lower(), pay, digest)
    console.print(table)


@app.command()
def cancel(job_id: int, rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Cancel your job: refunded at once while Submitted, else cancelled by the bridge."""
    from bridge.chain.actions import EscrowClient
    from bridge.chain.spec import Status

    client = EscrowClient(rpc_url, _address(contract), key)
    client.cancel(job_id)
    job = client.job(job_id)
    if job.status is Status.CANCELLED:
        console.print(f"job {job_id} cancelled; the refund is credited (`ce-bridge withdraw`)")
    else:
        console.print(f"cancellation of job {job_id} requested; the bridge will cancel it")


@app.command()
def withdraw(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Withdraw your credited refunds or earnings."""
    from bridge.chain.actions import EscrowClient

    client = EscrowClient(rpc_url, _address(contract), key)
    amount = client.withdraw()
    console.print(f"withdrew {Web3.from_wei(amount, 'ether')} ETH to {client.sender}")


admin_app = _Typer(help="Admin functions of the escrow (DEFAULT_ADMIN_ROLE).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("set-pricing")
def admin_set_pricing(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    base_fee: Annotated[int, typer.Option(help="wei")],
    price_per_vcpu_hour: Annotated[int, typer.Option(help="wei")],
    price_per_callback_gas: Annotated[int, typer.Option(help="wei")],
) -> None:
    """Set the price: base fee + per vCPU-hour + per unit of callback gas."""
    from bridge.chain.actions import EscrowClient

    EscrowClient(rpc_url, _address(contract), key).set_pricing(
        base_fee, price_per_vcpu_hour, price_per_callback_gas
    )
    console.print("pricing set")


@admin_app.command("set-limits")
def admin_set_limits(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    limit: Annotated[list[str] | None, typer.Option(help="NAME=VALUE, e.g. maxHours=24")] = None,
    grace: Annotated[int | None, typer.Option(help="deadline grace, seconds")] = None,
) -> None:
    """Change spec limits (unnamed ones keep their value)."""
    from bridge.chain.actions import EscrowClient

    _apply_limits(EscrowClient(rpc_url, _address(contract), key), limit or [], grace)
    console.print("limits set")


@admin_app.command("set-treasury")
def admin_set_treasury(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt, treasury: str) -> None:
    """Set the address credited with the earnings of completed jobs."""
    from bridge.chain.actions import EscrowClient

    EscrowClient(rpc_url, _address(contract), key).set_treasury(_address(treasury))
    console.print(f"treasury set to {treasury}")


@admin_app.command("pause")
def admin_pause(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Stop new submissions (everything else keeps working)."""
    from bridge.chain.actions import EscrowClient

    EscrowClient(rpc_url, _address(contract), key).pause()
    console.print("submissions paused")


@admin_app.command("unpause")
def admin_unpause(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Allow submissions again."""
    from bridge.chain.actions import EscrowClient

    EscrowClient(rpc_url, _address(contract), key).unpause()
    console.print("submissions resumed")


@admin_app.command("grant-operator")
def admin_grant_operator(
    rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt, operator: str
) -> None:
    """Grant OPERATOR_ROLE to a bridge's operator address."""
    from bridge.chain.actions import EscrowClient

    EscrowClient(rpc_url, _address(contract), key).grant_operator(_address(operator))
    console.print(f"OPERATOR_ROLE granted to {operator}")


config_app = _Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    config: Annotated[Path | None, typer.Option(help="TOML config file (or BRIDGE_CONFIG)")] = None,
) -> None:
    """Validate the configuration and reach the RPC node, the database and CE: one line each."""
    from bridge.checks import run_checks

    problems = run_checks(config)
    for line in problems:
        err_console.print(f"[red]✗[/] {line}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("[green]✓[/] configuration valid; RPC, database and CE reachable")


@app.command()
def demo(
    jobs: Annotated[int, typer.Option(help="jobs of each kind")] = 1,
    keep_running: Annotated[bool, typer.Option(help="keep everything up until Ctrl-C")] = False,
    serve: Annotated[
        bool, typer.Option(help="no jobs: keep the stack up for the dapp at /app/ until Ctrl-C")
    ] = False,
    port: Annotated[int, typer.Option(help="the bridge API's port with --serve")] = 8080,
) -> None:
    """Start Anvil, the CE emulator and the bridge; submit jobs; show them finish on-chain."""
    from bridge.demo import run_demo, serve_demo

    try:
        if serve:
            serve_demo(console, port=port)
            return
        ok = run_demo(console, jobs_per_kind=jobs, keep_running=keep_running)
    except KeyboardInterrupt:
        console.print("interrupted: everything the demo started has been stopped")
        raise typer.Exit(130) from None
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


def _apply_limits(client: Any, items: list[str], grace: int | None) -> None:
    from bridge.chain.actions import LIMIT_FIELDS

    limits, current_grace = client.limits()
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in LIMIT_FIELDS or not value.isdigit():
            _fail(f"--limit must be NAME=NUMBER with NAME one of {', '.join(LIMIT_FIELDS)}")
        limits[name] = int(value)
    client.set_limits(limits, current_grace if grace is None else grace)


def _result_uri(client: Any, job_id: int) -> str | None:
    """The resultURI of a completed job, from its JobCompleted event."""
    try:
        logs = client.contract.events.JobCompleted().get_logs(
            from_block=0, argument_filters={"jobId": job_id}
        )
    except Exception:
        return None
    return str(logs[-1]["args"]["resultURI"]) if logs else None


def _check_rpc(w3: Web3, url: str) -> None:
    try:
        w3.eth.chain_id  # noqa: B018 - the call is the check
    except Exception:
        _fail(f"cannot reach the JSON-RPC node at {url}")


def main() -> None:
    """Entry point: runs the app, turning bridge errors into one line and exit status 1."""
    try:
        app()
    except (BridgeError, ConfigError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)

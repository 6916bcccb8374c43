"""The ``ce-bridge`` command line (Typer + Rich). Thin commands that call services.

Every mistake ends with one line naming the flag, variable or field and what is expected, never a
traceback and never usage text: exit status 2 for a usage mistake (a bad or missing flag value,
flags that exclude each other; job documents from flags go through :mod:`bridge.jobdoc`), 1 for
everything else (a bad job file, no contract at the address, an unreachable node, a revert named
by its custom error). Secrets are never printed.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from bridge.errors import BridgeError, ConfigError
from bridge.lifecycle import limit_malloc_arenas
from bridge.logs import redact_url

if TYPE_CHECKING:
    from web3 import Web3

    from bridge.chain.actions import EscrowClient


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


def _checked_address(value: Any) -> Any:
    """Option callback: an address (or a list of them) in EIP-55 form, else a usage error."""
    from bridge.chain.address import checksum_address

    if value is None:
        return None
    try:
        if isinstance(value, list | tuple):
            return [checksum_address(v) for v in value]
        return checksum_address(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


#: The order of secp256k1: a private key is a number in [1, n).
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _checked_key(value: str | None) -> str | None:
    """Option callback: a secp256k1 private key, 32 bytes of hex (the key is never echoed)."""
    if value is None:
        return None
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    if (
        len(digits) != 64
        or not all(c in "0123456789abcdefABCDEF" for c in digits)
        or not (0 < int(digits, 16) < _SECP256K1_N)
    ):
        raise typer.BadParameter("not a valid private key (32 bytes of hex)")
    return value


def _integer(text: str | int) -> int:
    """Option parser: an integer in words ("expected an integer, got 'two'"), not pydantic's."""
    if isinstance(text, int):  # an option's default goes through the parser too
        return text
    try:
        return int(text, 10)
    except ValueError:
        raise typer.BadParameter(f"expected an integer, got {text!r}") from None


def _integer_between(
    low: int, high: int, shown_high: str | None = None
) -> Callable[[str | int], int]:
    """Option parser: an integer from ``low`` to ``high``, else a usage error saying so."""

    def parse(text: str | int) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise typer.BadParameter(f"must be between {low} and {shown_high or high}, got {value}")
        return value

    return parse


def _int_opt(help: str) -> Any:
    """An integer option whose bad value is said in words (see ``_integer``)."""
    return typer.Option(parser=_integer, help=help)


RpcOpt = Annotated[str, typer.Option(envvar="BRIDGE_RPC_URL", help="JSON-RPC URL of the node")]
ContractOpt = Annotated[
    str,
    typer.Option(
        envvar="BRIDGE_CONTRACT_ADDRESS", help="JobEscrow address", callback=_checked_address
    ),
]
KeyOpt = Annotated[
    str,
    typer.Option(
        envvar="BRIDGE_USER_KEY",
        help="private key that signs (env BRIDGE_USER_KEY)",
        show_default=False,
        callback=_checked_key,
    ),
]
AddressArg = Annotated[str, typer.Argument(callback=_checked_address)]
#: ``--limit`` and ``--grace`` of ``deploy`` and ``admin set-limits`` (``_parse_limits``).
LimitsOpt = Annotated[
    list[str] | None, typer.Option(help="NAME=VALUE of a limit, e.g. maxHours=24")
]
GraceOpt = Annotated[int | None, _int_opt("deadline grace, seconds")]
JobIdArg = Annotated[
    int,
    typer.Argument(parser=_integer_between(0, 2**256 - 1, "2**256 - 1"), help="on-chain job id"),
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
    in the same process. Makes `config check`'s checks first: a permanent problem (no contract,
    not a JobEscrow, a key without OPERATOR_ROLE, a database bound to another chain or contract,
    another `run` holding the database or the key) ends it with one line and exit status 1; an
    unreachable node, database or CE is waited for, one log line per back-off.
    """
    limit_malloc_arenas()  # before any thread starts
    # First of all, so a SIGTERM or Ctrl-C during the start-up checks is a clean stop too.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    from bridge.api import create_app, serve_api_in_thread
    from bridge.checks import start_bridge
    from bridge.config import load_settings, unknown_settings

    settings = load_settings(config)
    _setup_logging(settings.log_json)
    for line in unknown_settings(config):
        logging.getLogger("bridge").warning("ignored: %s", line)
    bridge = start_bridge(settings, stop)
    if bridge is None:
        return  # stopped while waiting for a service
    try:
        api = serve_api_in_thread(
            create_app(settings, bridge), settings.api_host, settings.api_port
        )
    except BaseException:
        bridge.stop()
        raise
    # What start-up built (modules, the contract's ABI, the apps) lives as long as the
    # process: out of the collector's sight, so a full collection no longer walks it again.
    gc.freeze()
    bridge.start()
    logging.getLogger("bridge").info(
        "bridge running for %s as operator %s; API at %s",
        settings.contract_address,
        settings.operator_address,
        api.url,
    )
    while not stop.wait(0.5) and bridge.fatal is None:
        pass
    api.stop()
    bridge.stop()
    if bridge.fatal is not None:
        _fail(bridge.fatal)


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="port to listen on", parser=_integer_between(0, 65535))
    ] = 8090,
    data_dir: Annotated[Path | None, typer.Option(help="where output files go")] = None,
    running_seconds: Annotated[float, typer.Option(help="time a job runs")] = 1.0,
    queue_seconds: Annotated[float, typer.Option(help="time in Provisioning+Downloading")] = 1.0,
    fail_command: Annotated[
        list[str] | None, typer.Option(help="a job whose command contains this fails")
    ] = None,
) -> None:
    """Serve the CE emulator (the Remote API under /remotejobs/v2/) until interrupted."""
    from pydantic import ValidationError

    from bridge.jobdoc import describe
    from bridge.remote.emulator import EmulatorConfig
    from bridge.remote.server import serve_emulator

    timings = {"--running-seconds": running_seconds, "--queue-seconds": queue_seconds}
    for flag, seconds in timings.items():
        if not 0 <= seconds < float("inf"):
            raise typer.BadParameter(
                f"expected seconds >= 0, got {seconds}", param_hint=f"'{flag}'"
            )
    try:
        config = EmulatorConfig(
            data_dir=data_dir,
            provisioning_seconds=queue_seconds / 2,
            downloading_seconds=queue_seconds / 2,
            running_seconds=running_seconds,
            fail_commands=frozenset(fail_command or ()),
        )
    except ValidationError as exc:
        raise ConfigError("; ".join(describe(exc))) from None
    console.print(f"CE emulator on http://{host}:{port}/remotejobs/v2/")
    serve_emulator(host, port, config)


@app.command()
def deploy(
    rpc_url: RpcOpt,
    key: KeyOpt,
    operator: Annotated[
        list[str] | None,
        typer.Option(help="address to grant OPERATOR_ROLE (repeatable)", callback=_checked_address),
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option(help="admin address to hand DEFAULT_ADMIN_ROLE to", callback=_checked_address),
    ] = None,
    treasury: Annotated[
        str | None, typer.Option(help="treasury address", callback=_checked_address)
    ] = None,
    base_fee: Annotated[int | None, _int_opt("pricing: base fee, wei")] = None,
    price_per_vcpu_hour: Annotated[int | None, _int_opt("pricing: wei")] = None,
    price_per_callback_gas: Annotated[int | None, _int_opt("pricing: wei")] = None,
    limit: LimitsOpt = None,
    grace: GraceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Deploy JobEscrow; the signer is the admin until --admin hands the role over.

    Prints the address, chain id and block, and the pricing and limits in force (``--json``: all
    of them, as one JSON object).
    """
    from bridge.chain.deploy import connect, deploy_escrow

    signer = _account(key)
    prices = {"--base-fee": base_fee, "--price-per-vcpu-hour": price_per_vcpu_hour}
    prices["--price-per-callback-gas"] = price_per_callback_gas
    _check_prices(prices)
    new_limits = _parse_limits(limit or [], grace)
    w3 = connect(rpc_url, [key])
    _check_rpc(w3, rpc_url)
    address = deploy_escrow(w3, signer, operators=operator or [], treasury=treasury)
    client = _escrow(rpc_url, address, key)
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
        _apply_limits(client, new_limits, grace)
    if admin is not None and admin != signer:
        from bridge.chain.deploy import connect as _connect

        role = b"\x00" * 32
        tx = client.contract.functions.grantRole(role, admin).transact({"from": signer})
        _connect(rpc_url).eth.wait_for_transaction_receipt(tx)
        tx = client.contract.functions.renounceRole(role, signer).transact({"from": signer})
        client.w3.eth.wait_for_transaction_receipt(tx)
    block = int(w3.eth.block_number)
    limits, deadline_grace = client.limits()
    pricing = client.pricing()
    if as_json:
        summary = {"address": address, "chainId": int(w3.eth.chain_id), "block": block}
        summary |= {"pricing": pricing, "limits": limits, "deadlineGrace": deadline_grace}
        print(json.dumps(summary))
    else:
        console.print(f"JobEscrow deployed at [bold]{address}[/] (block {block})")
        console.print("pricing (wei): " + ", ".join(f"{k}={v}" for k, v in pricing.items()))
        shown = ", ".join(f"{k}={v}" for k, v in limits.items())
        console.print(f"limits: {shown}; deadlineGrace={deadline_grace}s")


@app.command()
def submit(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    job_file: Annotated[
        Path | None,
        typer.Option(help="a JSON job file: CE's job-create body (+ callbackGasLimit)"),
    ] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", help=f"CE app [default: {DEFAULT_APP}]")
    ] = None,
    command: Annotated[
        str | None, typer.Option(help=f"command line [default: {DEFAULT_COMMAND}]")
    ] = None,
    vcpus: Annotated[int | None, _int_opt("vCPUs [default: 1]")] = None,
    ram: Annotated[int | None, _int_opt("RAM, MB [default: 512]")] = None,
    disk: Annotated[int | None, _int_opt("disk, MB [default: 512]")] = None,
    network_download: Annotated[int | None, _int_opt("MB [default: 0]")] = None,
    network_upload: Annotated[int | None, _int_opt("MB [default: 0]")] = None,
    hours: Annotated[int | None, _int_opt("CE's time limit, hours [default: 1]")] = None,
    input_file: Annotated[
        list[str] | None, typer.Option(help="NAME=URL of an input file (repeatable)")
    ] = None,
    callback_gas: Annotated[
        int | None, typer.Option(help="callback gas limit [default: 0, no callback]")
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait until the job is terminal")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 3600.0,
) -> None:
    """Submit a job (from flags or a job file, see examples/), paying its quote."""
    from bridge.chain.spec import Status

    flags = {
        "--app": app_name,
        "--command": command,
        "--vcpus": vcpus,
        "--ram": ram,
        "--disk": disk,
        "--network-download": network_download,
        "--network-upload": network_upload,
        "--hours": hours,
        "--input-file": input_file,
        "--callback-gas": callback_gas,
    }
    if job_file is not None:
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise typer.BadParameter(
                f"cannot be combined with {', '.join(given)}: the job file holds the whole job",
                param_hint="'--job-file'",
            )
        document = _read_job_file(job_file)
    else:
        document = _job_from_flags(flags)
    spec, gas = document.to_spec(), document.callback_gas_limit
    client = _escrow(rpc_url, contract, key)
    job_id, price = client.submit(spec, gas)
    console.print(f"job [bold]{job_id}[/] submitted, paid {_ether(price)} ETH")
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
def status(job_id: JobIdArg, rpc_url: RpcOpt, contract: ContractOpt) -> None:
    """Show a job's on-chain state as JSON."""
    client = _escrow(rpc_url, contract)
    data = client.job(job_id).to_json()
    uri = _result_uri(client, job_id)
    if uri:
        data["resultURI"] = uri
    print(json.dumps(data, indent=2))


@app.command()
def jobs(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    requester: Annotated[
        str | None, typer.Option(help="only this requester's jobs", callback=_checked_address)
    ] = None,
    state: Annotated[str | None, typer.Option("--status", help="only jobs in this status")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List jobs on-chain, newest first."""
    from rich.table import Table

    from bridge.chain.spec import Status

    wanted = None
    if state is not None:
        try:
            wanted = Status[state.upper()]
        except KeyError:
            raise typer.BadParameter(
                f"unknown status {state!r}: one of " + ", ".join(s.name.lower() for s in Status),
                param_hint="'--status'",
            ) from None
    client = _escrow(rpc_url, contract)
    found = client.jobs(requester=requester, status=wanted)
    if as_json:
        print(json.dumps([j.to_json() for j in found], indent=2))
        return
    table = Table()
    for column in ("job", "requester", "status", "payment (ETH)", "result hash"):
        table.add_column(column)
    for j in found:
        digest = "0x" + j.result_hash.hex()[:16] + "…" if any(j.result_hash) else "-"
        pay = str(_ether(j.payment))
        table.add_row(str(j.job_id), j.requester, j.status.name.lower(), pay, digest)
    console.print(table)


@app.command()
def cancel(job_id: JobIdArg, rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Cancel your job: refunded at once while Submitted, else cancelled by the bridge."""
    from bridge.chain.spec import Status

    client = _escrow(rpc_url, contract, key)
    client.cancel(job_id)
    job = client.job(job_id)
    if job.status is Status.CANCELLED:
        console.print(f"job {job_id} cancelled; the refund is credited (`ce-bridge withdraw`)")
    else:
        console.print(f"cancellation of job {job_id} requested; the bridge will cancel it")


@app.command()
def withdraw(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Withdraw your credited refunds or earnings."""
    client = _escrow(rpc_url, contract, key)
    amount = client.withdraw()
    console.print(f"withdrew {_ether(amount)} ETH to {client.sender}")


admin_app = _Typer(help="Admin functions of the escrow (DEFAULT_ADMIN_ROLE).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("set-pricing")
def admin_set_pricing(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    base_fee: Annotated[int, _int_opt("wei")],
    price_per_vcpu_hour: Annotated[int, _int_opt("wei")],
    price_per_callback_gas: Annotated[int, _int_opt("wei")],
) -> None:
    """Set the price: base fee + per vCPU-hour + per unit of callback gas."""
    _check_prices(
        {
            "--base-fee": base_fee,
            "--price-per-vcpu-hour": price_per_vcpu_hour,
            "--price-per-callback-gas": price_per_callback_gas,
        }
    )

    _admin(
        rpc_url,
        contract,
        key,
        lambda escrow: escrow.set_pricing(base_fee, price_per_vcpu_hour, price_per_callback_gas),
        "pricing set",
    )


@admin_app.command("set-limits")
def admin_set_limits(
    rpc_url: RpcOpt,
    contract: ContractOpt,
    key: KeyOpt,
    limit: LimitsOpt = None,
    grace: GraceOpt = None,
) -> None:
    """Change spec limits (unnamed ones keep their value)."""
    if not limit and grace is None:
        raise typer.BadParameter(
            "nothing to set: give at least one --limit NAME=VALUE, or --grace",
            param_hint="'--limit'",
        )
    changes = _parse_limits(limit or [], grace)
    _admin(
        rpc_url, contract, key, lambda escrow: _apply_limits(escrow, changes, grace), "limits set"
    )


@admin_app.command("set-treasury")
def admin_set_treasury(
    rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt, treasury: AddressArg
) -> None:
    """Set the address credited with the earnings of completed jobs."""
    _admin(
        rpc_url,
        contract,
        key,
        lambda escrow: escrow.set_treasury(treasury),
        f"treasury set to {treasury}",
    )


@admin_app.command("pause")
def admin_pause(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Stop new submissions (everything else keeps working)."""
    _admin(rpc_url, contract, key, lambda escrow: escrow.pause(), "submissions paused")


@admin_app.command("unpause")
def admin_unpause(rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt) -> None:
    """Allow submissions again."""
    _admin(rpc_url, contract, key, lambda escrow: escrow.unpause(), "submissions resumed")


@admin_app.command("grant-operator")
def admin_grant_operator(
    rpc_url: RpcOpt, contract: ContractOpt, key: KeyOpt, operator: AddressArg
) -> None:
    """Grant OPERATOR_ROLE to a bridge's operator address."""
    _admin(
        rpc_url,
        contract,
        key,
        lambda escrow: escrow.grant_operator(operator),
        f"OPERATOR_ROLE granted to {operator}",
    )


config_app = _Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    config: Annotated[Path | None, typer.Option(help="TOML config file (or BRIDGE_CONFIG)")] = None,
) -> None:
    """Validate the configuration and reach the RPC node, the database and CE: one line each."""
    from bridge.checks import describe_setup, run_checks

    problems = run_checks(config)
    for line in problems:  # a problem is one line, and nothing else is said beside it
        err_console.print(f"[red]✗[/] {line}", highlight=False)
    if problems:
        raise typer.Exit(1)
    for line in describe_setup(config):  # what is in force: endpoints, finality, fees
        console.print(f"  {line}", highlight=False)
    console.print("[green]✓[/] configuration valid; RPC, database and CE reachable")


@app.command()
def demo(
    jobs: Annotated[
        int, typer.Option(help="jobs of each kind", parser=_integer_between(1, 10_000))
    ] = 1,
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


def _escrow(rpc_url: str, contract: str, key: str | None = None) -> EscrowClient:
    """The escrow at ``contract`` through ``rpc_url``, signing with ``key`` if given (web3 is
    imported on the first command that needs it, not at every start of the CLI).

    Raises:
        ConfigError: a bad address or key, or no contract at ``contract``.
        RpcUnavailable: the node cannot be reached.
    """
    from bridge.chain.actions import EscrowClient

    return EscrowClient(rpc_url, contract, key)


def _admin(
    rpc_url: str, contract: str, key: str, act: Callable[[EscrowClient], None], done: str
) -> None:
    """One admin action: ``act`` on the escrow, signing with ``key`` (it returns once the
    transaction is mined, or raises), then ``done`` printed."""
    act(_escrow(rpc_url, contract, key))
    console.print(done)


def _account(key: str) -> str:
    from eth_account import Account

    try:
        return str(Account.from_key(key).address)
    except Exception:
        _fail("the signing key is not a valid private key (32 bytes of hex)")
        raise


DEFAULT_APP = "charityengine:wolframengine"
DEFAULT_COMMAND = 'math -run "Print[2+2]" > output/out.txt'

#: How a job document's field is named on the command line.
_FLAG_OF_FIELD = {
    "app": "--app",
    "commandLine": "--command",
    "specs.vcpus": "--vcpus",
    "specs.ram": "--ram",
    "specs.disk": "--disk",
    "specs.networkDownload": "--network-download",
    "specs.networkUpload": "--network-upload",
    "hours": "--hours",
    "inputFiles": "--input-file",
    "callbackGasLimit": "--callback-gas",
}


def _job_from_flags(flags: dict[str, Any]) -> Any:
    """The job file the flags describe (defaults filled in), or a usage error naming the flag."""
    from pydantic import ValidationError

    from bridge.jobdoc import JobFile, describe

    files = []
    for item in flags["--input-file"] or []:
        name, sep, url = item.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"expected NAME=URL, got {item!r}", param_hint="'--input-file'"
            )
        files.append({"filename": name, "url": url})

    def given(flag: str, default: Any) -> Any:
        return default if flags[flag] is None else flags[flag]

    document = {
        "app": given("--app", DEFAULT_APP),
        "commandLine": given("--command", DEFAULT_COMMAND),
        "specs": {
            "vcpus": given("--vcpus", 1),
            "ram": given("--ram", 512),
            "disk": given("--disk", 512),
            "networkDownload": given("--network-download", 0),
            "networkUpload": given("--network-upload", 0),
        },
        "hours": given("--hours", 1),
        "inputFiles": files,
        "callbackGasLimit": given("--callback-gas", 0),
    }
    try:
        return JobFile.model_validate(document)
    except ValidationError as exc:
        problems = []
        for line in describe(exc):
            path, _, message = line.partition(": ")
            flag = _FLAG_OF_FIELD.get(path) or _FLAG_OF_FIELD.get(path.split("[")[0], path)
            problems.append((flag, message))
        flag, message = problems[0]
        also = "".join(f"; {f}: {m}" for f, m in problems[1:])
        raise typer.BadParameter(message + also, param_hint=f"'{flag}'") from None


def _read_job_file(path: Path) -> Any:
    """The job file at ``path``, validated; a problem is one ``ConfigError`` line naming it."""
    from bridge.jobdoc import parse_job_file

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--job-file {path}: cannot read it: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--job-file {path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    try:
        return parse_job_file(data)
    except ValueError as exc:
        raise ConfigError(f"--job-file {path}: {exc}") from None


def _check_prices(prices: dict[str, int | None]) -> None:
    """A usage error naming the first price flag out of its uint range (from the ABI)."""
    from bridge.chain.actions import PRICING_FIELDS, uint_fields

    bounds = uint_fields("setPricing")
    for (flag, value), field in zip(prices.items(), PRICING_FIELDS, strict=True):
        if value is not None and not 0 <= value <= bounds[field]:
            maximum = bounds[field]
            raise typer.BadParameter(
                f"must be between 0 and {maximum} wei (uint{maximum.bit_length()}), got {value}",
                param_hint=f"'{flag}'",
            )


def _parse_limits(items: list[str], grace: int | None) -> dict[str, int]:
    """``--limit NAME=VALUE`` items as a dict, each checked against its field's uint range."""
    from bridge.chain.actions import LIMIT_FIELDS, uint_fields

    bounds = uint_fields("setLimits")
    changes: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in LIMIT_FIELDS:
            raise typer.BadParameter(
                f"expected NAME=VALUE with NAME one of {', '.join(LIMIT_FIELDS)}, got {item!r}",
                param_hint="'--limit'",
            )
        maximum = bounds[name]
        if not value.isdigit() or int(value) > maximum:
            raise typer.BadParameter(
                f"{name} must be an integer between 0 and {maximum} "
                f"(uint{maximum.bit_length()}), got {value!r}",
                param_hint="'--limit'",
            )
        changes[name] = int(value)
    if grace is not None and not 0 <= grace <= bounds["newDeadlineGrace"]:
        maximum = bounds["newDeadlineGrace"]
        raise typer.BadParameter(
            f"must be between 0 and {maximum} seconds, got {grace}", param_hint="'--grace'"
        )
    return changes


def _apply_limits(client: Any, changes: dict[str, int], grace: int | None) -> None:
    limits, current_grace = client.limits()
    limits.update(changes)
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


def _ether(wei: int) -> Any:
    """``wei`` in ether, as web3 prints it (web3 is imported here, not at start-up)."""
    from web3 import Web3

    return Web3.from_wei(wei, "ether")


def _check_rpc(w3: Web3, url: str) -> None:
    try:
        w3.eth.chain_id  # noqa: B018 - the call is the check
    except Exception:
        _fail(f"cannot reach the JSON-RPC node at {redact_url(url)}")


def main() -> None:
    """Entry point: runs the app, turning bridge errors into one line and exit status 1.

    An error nobody foresaw is a bug: it is one line too (its type only, since its text may
    carry a URL with credentials), and ``CE_BRIDGE_DEBUG=1`` shows the traceback.

    ``kill -USR1 <pid>`` makes any command (``run`` above all) print every thread's stack to
    stderr and go on: where a process that seems hung is waiting. Code locations only: no
    variable, so no secret.
    """
    import faulthandler
    import os

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except (BridgeError, ConfigError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except Exception as exc:  # the outermost boundary: one line, never a traceback
        if os.environ.get("CE_BRIDGE_DEBUG") == "1":
            raise
        err_console.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__} (a bug: please report it; "
            "CE_BRIDGE_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        sys.exit(1)

"""Every ``ce-bridge`` command, and ``run``'s start-up, given bad input, as an operator types it.

Each case runs the installed entry point (``.venv/bin/ce-bridge``) as a subprocess with a clean
environment and asserts the rules of the CLI:

- exit status 2 for a usage mistake (a flag's value, a missing option, flags that exclude each
  other) and 1 for everything else;
- the output (stdout and stderr) is exactly ONE line: ``error: ...`` (``✗ ...`` for
  ``config check``, which lists one line per problem; each case here has one problem). Usage
  errors print no usage text either, so there is no exception to the one-line rule;
- the line names the variable, flag or field and what is expected (the case's ``needles``);
- no ``Traceback``, no Python or library wording (``absent``), no secret.

Cases that need a chain use the session's Anvil and deployment (tests/conftest.py) inside a
snapshot; ``config check`` cases start from a configuration that passes every check (proven by
``test_the_base_configuration_passes``) and break exactly one thing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from web3 import Web3

from bridge.devchain import free_port
from bridge.remote.emulator import EmulatorConfig
from bridge.remote.server import EmulatorServer
from tests.builders import Accounts, Deployment

CE_BRIDGE = Path(sys.executable).parent / "ce-bridge"
AUTHENTICATOR = "cli-errors-authenticator-7c2e"
DB_PASSWORD = "db-password-91f3"
#: Never in any output, whatever the case.
ALWAYS_ABSENT = (
    "Traceback",
    "Value error,",
    "Input should",
    "pydantic",
    "errors.pydantic.dev",
    AUTHENTICATOR,
)

VALID_JOB = {
    "app": "charityengine:wolframengine",
    "commandLine": "math 2+2 > output/out.txt",
    "specs": {"vcpus": 1, "ram": 512, "disk": 512},
    "hours": 1,
}


@dataclass(frozen=True)
class Case:
    """One bad input. ``args``, ``env`` values and ``files`` contents are formatted with the
    placeholders of ``placeholders()`` ({rpc}, {contract}, {user_key}, {tmp}, ...); ``files``
    are written as they are."""

    id: str
    args: tuple[str, ...]
    needles: tuple[str, ...]
    code: int = 1
    env: Mapping[str, str | None] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    #: ``config check`` and ``run`` read BRIDGE_* settings: start from the valid base config.
    settings: bool = False
    #: Submit a job (as the user) first; its id is {job}.
    needs_job: bool = False


def job(**changes: object) -> str:
    return json.dumps({**VALID_JOB, **changes})


CHAIN = ("--rpc-url", "{rpc}", "--contract", "{contract}")
USER = (*CHAIN, "--key", "{user_key}")
ADMIN = (*CHAIN, "--key", "{admin_key}")
PRICES = ("--base-fee", "1", "--price-per-vcpu-hour", "1", "--price-per-callback-gas", "1")

CASES = [
    # ---- the program itself
    Case("unknown-command", ("bogus",), ("No such command", "bogus"), code=2),
    Case("unknown-option", ("status", "1", "--colour"), ("--colour",), code=2),
    # ---- run: every setting is checked before anything starts
    Case(
        "run-nothing-set",
        ("run",),
        ("BRIDGE_RPC_URL is required", "BRIDGE_CE_AUTHENTICATOR is required"),
    ),
    Case(
        "run-postgres-scheme",
        ("run",),
        ("BRIDGE_DATABASE_URL", "postgresql+psycopg://"),
        env={"BRIDGE_DATABASE_URL": f"postgres://postgres:{DB_PASSWORD}@127.0.0.1/x"},
        absent=("NoSuchModuleError", DB_PASSWORD),
        settings=True,
    ),
    Case(
        "run-garbage-database-url",
        ("run",),
        ("BRIDGE_DATABASE_URL", "not a database URL", "sqlite:///"),
        env={"BRIDGE_DATABASE_URL": "::garbage::"},
        settings=True,
    ),
    Case(
        "run-malformed-toml",
        ("run", "--config", "{tmp}/bad.toml"),
        ("bad.toml", "not valid TOML", "line 2"),
        files={"bad.toml": 'rpc_url = "http://x"\nconfirmations = = 3\n'},
        absent=("TOMLDecodeError",),
        settings=True,
    ),
    Case(
        "run-bad-toml-value",
        ("run", "--config", "{tmp}/c.toml"),
        ("c.toml: confirmations", "expected a number of blocks", "'two'"),
        files={"c.toml": 'confirmations = "two"\n'},
        absent=("BRIDGE_CONFIRMATIONS",),
        settings=True,
    ),
    Case(
        "run-missing-config-file",
        ("run",),
        ("BRIDGE_CONFIG", "no such file"),
        env={"BRIDGE_CONFIG": "/nonexistent/ce-bridge.toml"},
        settings=True,
    ),
    Case(
        "run-empty-authenticator",
        ("run",),
        ("BRIDGE_CE_AUTHENTICATOR", "empty"),
        env={"BRIDGE_CE_AUTHENTICATOR": ""},
        absent=("BRIDGE_CE_URL",),
        settings=True,
    ),
    Case(
        "run-address-bad-checksum",
        ("run",),
        ("BRIDGE_CONTRACT_ADDRESS", "EIP-55 checksum"),
        env={"BRIDGE_CONTRACT_ADDRESS": "{bad_checksum}"},
        settings=True,
    ),
    Case(
        "run-bad-operator-key",
        ("run",),
        ("BRIDGE_OPERATOR_KEY", "not a valid private key"),
        env={"BRIDGE_OPERATOR_KEY": "0x1234"},
        settings=True,
    ),
    Case(
        "run-port-out-of-range",
        ("run",),
        ("BRIDGE_API_PORT", "65535"),
        env={"BRIDGE_API_PORT": "99999"},
        settings=True,
    ),
    Case(
        "run-two-key-sources",
        ("run",),
        ("exactly one of BRIDGE_OPERATOR_KEY and BRIDGE_OPERATOR_KEYSTORE",),
        env={"BRIDGE_OPERATOR_KEYSTORE": "{tmp}/keystore.json"},
        files={"keystore.json": "{}"},
        settings=True,
    ),
    # ---- config check: one problem, one line
    Case(
        "check-misspelt-variable",
        ("config", "check"),
        ("BRIDGE_CONFIRMATION", "no such setting", "did you mean BRIDGE_CONFIRMATIONS"),
        env={"BRIDGE_CONFIRMATION": "3"},
        settings=True,
    ),
    Case(
        "check-misspelt-toml-key",
        ("config", "check", "--config", "{tmp}/c.toml"),
        ("c.toml: confirmation", "no such setting", "did you mean confirmations"),
        files={"c.toml": "confirmation = 3\n"},
        settings=True,
    ),
    Case(
        "check-database-wrong-port",
        ("config", "check"),
        ("BRIDGE_DATABASE_URL", "127.0.0.1:{free}", "refused"),
        env={
            "BRIDGE_DATABASE_URL": f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:{{free}}/x"
        },
        absent=("OperationalError", DB_PASSWORD),
        settings=True,
    ),
    Case(
        "check-database-missing",
        ("config", "check"),
        ("BRIDGE_DATABASE_URL", 'database "ce_bridge_no_such_db" does not exist'),
        env={
            "BRIDGE_DATABASE_URL": (
                f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:5432/ce_bridge_no_such_db"
            )
        },
        absent=("OperationalError", DB_PASSWORD),
        settings=True,
    ),
    Case(
        "check-no-contract",
        ("config", "check"),
        ("BRIDGE_CONTRACT_ADDRESS", "no contract at"),
        env={"BRIDGE_CONTRACT_ADDRESS": "{nocode}"},
        settings=True,
    ),
    Case(
        "check-key-without-role",
        ("config", "check"),
        ("BRIDGE_OPERATOR_KEY", "lacks OPERATOR_ROLE"),
        env={"BRIDGE_OPERATOR_KEY": "{other_key}"},
        settings=True,
    ),
    Case(
        "check-rpc-unreachable",
        ("config", "check"),
        ("BRIDGE_RPC_URL", "cannot reach"),
        env={"BRIDGE_RPC_URL": "http://127.0.0.1:{free}"},
        settings=True,
    ),
    Case(
        "check-ce-unreachable",
        ("config", "check"),
        ("BRIDGE_CE_URL", "cannot reach CE"),
        env={"BRIDGE_CE_URL": "http://127.0.0.1:{free}/remotejobs/v2/"},
        settings=True,
    ),
    Case(
        "check-ce-rejects-authenticator",
        ("config", "check"),
        ("BRIDGE_CE_AUTHENTICATOR", "rejected"),
        env={"BRIDGE_CE_AUTHENTICATOR": "not-the-right-one"},
        absent=("not-the-right-one",),
        settings=True,
    ),
    Case(
        "check-blank-authenticator",
        ("config", "check"),
        ("BRIDGE_CE_AUTHENTICATOR", "empty"),
        env={"BRIDGE_CE_AUTHENTICATOR": "   "},
        absent=("BRIDGE_CE_URL",),
        settings=True,
    ),
    # ---- deploy
    Case("deploy-bad-key", ("deploy", "--rpc-url", "{rpc}", "--key", "0xnope"), ("--key",), 2),
    Case(
        "deploy-limit-out-of-range",
        ("deploy", "--rpc-url", "{rpc}", "--key", "{admin_key}", "--limit", "maxVcpus=70000"),
        ("--limit", "maxVcpus", "between 0 and 65535", "uint16"),
        code=2,
    ),
    Case(
        "deploy-negative-price",
        ("deploy", "--rpc-url", "{rpc}", "--key", "{admin_key}", "--base-fee", "-1"),
        ("--base-fee", "between 0 and"),
        code=2,
    ),
    Case(
        "deploy-operator-bad-checksum",
        ("deploy", "--rpc-url", "{rpc}", "--key", "{admin_key}", "--operator", "{bad_checksum}"),
        ("--operator", "EIP-55 checksum"),
        code=2,
    ),
    Case(
        "deploy-node-unreachable",
        ("deploy", "--rpc-url", "http://127.0.0.1:{free}", "--key", "{admin_key}"),
        ("cannot reach", "127.0.0.1:{free}"),
    ),
    # ---- submit
    Case(
        "submit-vcpus-out-of-range",
        ("submit", *USER, "--vcpus", "70000", "--no-wait"),
        ("--vcpus", "between 1 and 65535", "70000"),
        code=2,
        absent=("MismatchedABI", "JSON-RPC"),
    ),
    Case(
        "submit-vcpus-not-a-number",
        ("submit", *USER, "--vcpus", "two", "--no-wait"),
        ("--vcpus", "expected an integer, got 'two'"),
        code=2,
    ),
    Case(
        "submit-zero-hours",
        ("submit", *USER, "--hours", "0", "--no-wait"),
        ("--hours", "between 1 and 65535"),
        code=2,
    ),
    Case(
        "submit-negative-ram",
        ("submit", *USER, "--ram", "-1", "--no-wait"),
        ("--ram", "between 0 and 4294967295"),
        code=2,
    ),
    Case(
        "submit-callback-gas-out-of-range",
        ("submit", *USER, "--callback-gas", "5000000000", "--no-wait"),
        ("--callback-gas", "4294967295"),
        code=2,
    ),
    Case(
        "submit-input-file-without-url",
        ("submit", *USER, "--input-file", "data.csv", "--no-wait"),
        ("--input-file", "NAME=URL"),
        code=2,
    ),
    Case(
        "submit-job-file-and-command",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--command", "x", "--no-wait"),
        ("--job-file", "--command", "cannot be combined"),
        code=2,
        files={"job.json": job()},
    ),
    Case(
        "submit-job-file-bad-integer",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--no-wait"),
        ("job.json", "specs.vcpus: expected an integer, got 'two'"),
        files={"job.json": job(specs={"vcpus": "two", "ram": 512, "disk": 512})},
        absent=("invalid literal",),
    ),
    Case(
        "submit-job-file-unknown-key",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--no-wait"),
        ("job.json", "priority: unknown key"),
        files={"job.json": job(priority=5)},
    ),
    Case(
        "submit-job-file-missing-field",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--no-wait"),
        ("job.json", "hours: is required"),
        files={"job.json": json.dumps({k: v for k, v in VALID_JOB.items() if k != "hours"})},
    ),
    Case(
        "submit-job-file-not-json",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--no-wait"),
        ("job.json", "not valid JSON", "line 1"),
        files={"job.json": "{app: nope"},
    ),
    Case(
        "submit-job-file-not-an-object",
        ("submit", *USER, "--job-file", "{tmp}/job.json", "--no-wait"),
        ("job.json", "expected a JSON object"),
        files={"job.json": "[1, 2]"},
    ),
    Case(
        "submit-job-file-missing",
        ("submit", *USER, "--job-file", "{tmp}/none.json", "--no-wait"),
        ("none.json", "cannot read it"),
    ),
    Case(
        "submit-no-contract-there",
        ("submit", "--rpc-url", "{rpc}", "--contract", "{nocode}", "--key", "{user_key}"),
        ("no contract at",),
    ),
    Case(
        "submit-contract-bad-checksum",
        ("submit", "--rpc-url", "{rpc}", "--contract", "{bad_checksum}", "--key", "{user_key}"),
        ("--contract", "BRIDGE_CONTRACT_ADDRESS", "EIP-55 checksum"),
        code=2,
    ),
    Case(
        "submit-over-the-contract-limit",
        ("submit", *USER, "--hours", "60000", "--no-wait"),
        ("HoursOverLimit", "60000"),
    ),
    Case(
        "submit-account-without-eth",
        ("submit", *CHAIN, "--key", "{poor_key}", "--no-wait"),
        ("ETH", "{poor}"),
        absent=("{poor_key_hex}",),
    ),
    # ---- status, jobs
    Case(
        "status-no-contract-there",
        ("status", "1", "--rpc-url", "{rpc}", "--contract", "{nocode}"),
        ("no contract at", "{nocode}"),
        absent=("BadFunctionCallOutput",),
    ),
    Case("status-unknown-job", ("status", "999", *CHAIN), ("job 999 does not exist",)),
    Case(
        "status-job-id-not-a-number",
        ("status", "one", *CHAIN),
        ("job_id", "expected an integer, got 'one'"),
        code=2,
    ),
    Case(
        "status-job-id-negative",
        ("status", "--", "-1", *CHAIN),
        ("job_id", "must be between 0 and 2**256 - 1, got -1"),
        code=2,
    ),
    Case(
        "status-node-unreachable",
        ("status", "1", "--rpc-url", "http://127.0.0.1:{free}", "--contract", "{contract}"),
        ("cannot reach the JSON-RPC node",),
    ),
    Case(
        "status-short-address",
        ("status", "1", "--rpc-url", "{rpc}", "--contract", "0x1234"),
        ("--contract", "not an Ethereum address"),
        code=2,
    ),
    Case("jobs-unknown-status", ("jobs", *CHAIN, "--status", "done"), ("--status", "done"), 2),
    Case("jobs-bad-requester", ("jobs", *CHAIN, "--requester", "bob"), ("--requester",), 2),
    # ---- cancel, withdraw
    Case(
        "cancel-someone-elses-job",
        ("cancel", "{job}", *CHAIN, "--key", "{other_key}"),
        ("NotRequester", "{other}"),
        needs_job=True,
    ),
    Case("cancel-without-key", ("cancel", "1", *CHAIN), ("--key", "BRIDGE_USER_KEY"), code=2),
    Case(
        "withdraw-nothing",
        ("withdraw", *CHAIN, "--key", "{other_key}"),
        ("NothingToWithdraw", "{other}"),
    ),
    # ---- admin
    Case(
        "set-pricing-negative",
        ("admin", "set-pricing", *ADMIN, *PRICES[:-1], "-5"),
        ("--price-per-callback-gas", "between 0 and"),
        code=2,
    ),
    Case(
        "set-pricing-too-large",
        ("admin", "set-pricing", *ADMIN, *PRICES[:-1], str(2**48)),
        ("--price-per-callback-gas", "uint48", str(2**48)),
        code=2,
    ),
    Case(
        "set-pricing-not-admin",
        ("admin", "set-pricing", *USER, *PRICES),
        ("AccessControlUnauthorizedAccount", "{user}", "DEFAULT_ADMIN_ROLE"),
        absent=("b'",),
    ),
    Case("set-limits-nothing", ("admin", "set-limits", *ADMIN), ("--limit", "nothing to set"), 2),
    Case(
        "set-limits-out-of-range",
        ("admin", "set-limits", *ADMIN, "--limit", "maxVcpus=70000"),
        ("--limit", "maxVcpus", "between 0 and 65535", "uint16"),
        code=2,
    ),
    Case(
        "set-limits-unknown-name",
        ("admin", "set-limits", *ADMIN, "--limit", "maxGpus=1"),
        ("--limit", "NAME=VALUE", "maxVcpus", "maxGpus"),
        code=2,
    ),
    Case(
        "set-limits-grace-negative",
        ("admin", "set-limits", *ADMIN, "--grace", "-1"),
        ("--grace", "between 0 and"),
        code=2,
    ),
    Case(
        "set-treasury-bad-address",
        ("admin", "set-treasury", *ADMIN, "0xnope"),
        ("treasury", "not an Ethereum address"),
        code=2,
    ),
    Case(
        "pause-not-admin",
        ("admin", "pause", *USER),
        ("AccessControlUnauthorizedAccount", "DEFAULT_ADMIN_ROLE"),
    ),
    Case("unpause-not-paused", ("admin", "unpause", *ADMIN), ("ExpectedPause",)),
    Case(
        "grant-operator-bad-checksum",
        ("admin", "grant-operator", *ADMIN, "{bad_checksum}"),
        ("operator", "EIP-55 checksum"),
        code=2,
    ),
    # ---- the emulator and the demo
    Case(
        "emulator-negative-time",
        ("emulator", "--running-seconds", "-1"),
        ("--running-seconds", "seconds >= 0"),
        code=2,
    ),
    Case("emulator-port-out-of-range", ("emulator", "--port", "70000"), ("--port", "65535"), 2),
    Case("demo-no-jobs", ("demo", "--jobs", "0"), ("--jobs", "between 1 and"), code=2),
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(authenticators=frozenset({AUTHENTICATOR}))) as server:
        yield server


@pytest.fixture
def placeholders(
    chain: Web3,
    anvil: object,
    deployment: Deployment,
    accounts: Accounts,
    emulator: EmulatorServer,
    tmp_path: Path,
) -> dict[str, str]:
    from eth_account import Account

    poor = Account.create()
    contract = deployment.escrow
    digits = contract[2:]
    flipped = digits.swapcase() if digits.swapcase() != digits else digits
    # The same address with every letter's case flipped: a mixed-case address whose EIP-55
    # checksum fails (unless the address has no letters at all, which the deployment's has not).
    bad_checksum = "0x" + flipped
    return {
        "rpc": anvil.url,  # type: ignore[attr-defined]
        "contract": contract,
        "user": accounts.user,
        "user_key": accounts.key(accounts.user),
        "admin_key": accounts.key(accounts.admin),
        "operator_key": accounts.key(accounts.operator),
        "other": accounts.other,
        "other_key": accounts.key(accounts.other),
        "nocode": accounts.spare[0],
        "poor": poor.address,
        "poor_key": "0x" + bytes(poor.key).hex(),
        "poor_key_hex": bytes(poor.key).hex(),
        "bad_checksum": bad_checksum,
        "free": str(free_port()),
        "tmp": str(tmp_path),
        "ce": emulator.base_url,
    }


def base_settings(values: Mapping[str, str]) -> dict[str, str]:
    """A configuration that passes every check of ``config check``."""
    return {
        "BRIDGE_RPC_URL": values["rpc"],
        "BRIDGE_CONTRACT_ADDRESS": values["contract"],
        "BRIDGE_OPERATOR_KEY": values["operator_key"],
        "BRIDGE_CE_URL": values["ce"],
        "BRIDGE_CE_AUTHENTICATOR": AUTHENTICATOR,
        "BRIDGE_DATABASE_URL": f"sqlite:///{values['tmp']}/bridge.db",
    }


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "CE_BRIDGE_"))}
    clean |= {"COLUMNS": "200", "NO_COLOR": "1", **env}
    return subprocess.run(
        [str(CE_BRIDGE), *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def submit_job(values: Mapping[str, str], cwd: Path) -> str:
    result = run_cli(
        ["submit", "--rpc-url", values["rpc"], "--contract", values["contract"], "--no-wait"],
        {"BRIDGE_USER_KEY": values["user_key"]},
        cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split("job ")[1].split()[0]


def test_the_base_configuration_passes(placeholders: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["config", "check"], base_settings(placeholders), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration valid" in result.stdout


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_mistake_is_one_line(case: Case, placeholders: dict[str, str], tmp_path: Path) -> None:
    values = dict(placeholders)
    if case.needs_job:
        values["job"] = submit_job(values, tmp_path)
    for name, content in case.files.items():
        (tmp_path / name).write_text(content)
    env = base_settings(values) if case.settings else {}
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.format(**values)
    args = [arg.format(**values) for arg in case.args]

    result = run_cli(args, env, tmp_path)

    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode == case.code, output
    assert len(lines) == 1, output
    marker = "✗ " if args[:2] == ["config", "check"] else "error: "
    assert lines[0].startswith(marker), output
    for needle in case.needles:
        assert needle.format(**values) in lines[0], output
    for text in (*ALWAYS_ABSENT, *case.absent):
        assert text.format(**values) not in output, output


def test_every_command_has_a_case() -> None:
    """The table covers each command of the CLI at least once."""
    from bridge.cli import admin_app, app, config_app

    def names(typer_app: object) -> set[str]:
        return {
            (c.name or c.callback.__name__).replace("_", "-")
            for c in typer_app.registered_commands  # type: ignore[attr-defined]
        }

    covered = {case.args[0] for case in CASES}
    covered |= {case.args[1] for case in CASES if case.args[0] in ("admin", "config")}
    commands = names(app) | names(admin_app) | names(config_app)
    assert commands - covered == set()


def test_run_warns_about_a_misspelt_setting_and_starts(
    placeholders: dict[str, str], tmp_path: Path
) -> None:
    """A misspelt variable is one warning line at start (``config check`` makes it a problem)."""
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "CE_BRIDGE_"))}
    env |= base_settings(placeholders)
    env |= {"BRIDGE_API_PORT": str(free_port()), "BRIDGE_CONFIRMATION": "3"}
    process = subprocess.Popen(
        [str(CE_BRIDGE), "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # ends when the process does
            seen.append(line)
            if "bridge running" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = "".join(seen)
    warnings = [line for line in seen if "BRIDGE_CONFIRMATION:" in line]
    assert len(warnings) == 1, output
    assert "did you mean BRIDGE_CONFIRMATIONS" in warnings[0], output
    assert "bridge running" in output and "Traceback" not in output

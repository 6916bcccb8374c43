"""The ``ce-bridge`` CLI against a real Anvil: the user and admin commands, and that every user
mistake ends in one clear line with exit status 1, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner
from web3 import Web3

from bridge.cli import app
from bridge.devchain import free_port
from tests.builders import Accounts, Deployment

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    """Runs the CLI; returns the exit code and stdout+stderr."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def base(chain: Web3, anvil: object, deployment: Deployment) -> list[str]:
    url = anvil.url  # type: ignore[attr-defined]
    return ["--rpc-url", url, "--contract", deployment.escrow]


def assert_one_line_error(output: str, *needles: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:"), output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], output


def test_submit_status_jobs_cancel_withdraw(base: list[str], accounts: Accounts) -> None:
    user_key = accounts.key(accounts.user)
    code, out = invoke("submit", *base, "--key", user_key, "--vcpus", "2", "--no-wait")
    assert code == 0, out
    job_id = int(out.split("job ")[1].split()[0])

    code, out = invoke("status", str(job_id), *base[:2], "--contract", base[3])
    assert code == 0, out
    status = json.loads(out)
    assert status["status"] == "submitted" and status["requester"] == accounts.user

    code, out = invoke("jobs", *base, "--requester", accounts.user, "--json")
    assert code == 0, out
    assert [j["jobId"] for j in json.loads(out)] == [job_id]

    code, out = invoke("cancel", str(job_id), *base, "--key", user_key)
    assert code == 0, out
    assert "cancelled" in out
    code, out = invoke("withdraw", *base, "--key", user_key)
    assert code == 0, out
    assert "withdrew" in out


def test_submit_from_a_ce_job_file(base: list[str], accounts: Accounts, tmp_path: Path) -> None:
    document = {
        "authenticator": "ignored",
        "app": "charityengine:wolframengine",
        "commandLine": "math 2+2 > output/out.txt",
        "specs": {"vcpus": 2, "ram": 512, "disk": 512, "networkDownload": 0, "networkUpload": 0},
        "hours": 1,
        "inputFiles": [{"filename": "in.txt", "url": "http://work.charityengine.com/in.m"}],
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(document))
    key = accounts.key(accounts.user)
    code, out = invoke("submit", *base, "--key", key, "--job-file", str(path), "--no-wait")
    assert code == 0, out
    assert "submitted" in out


def test_admin_commands(base: list[str], accounts: Accounts, chain: Web3) -> None:
    admin_key = accounts.key(accounts.admin)
    code, out = invoke(
        "admin",
        "set-pricing",
        *base,
        "--key",
        admin_key,
        "--base-fee",
        "7",
        "--price-per-vcpu-hour",
        "11",
        "--price-per-callback-gas",
        "13",
    )
    assert code == 0, out
    code, out = invoke("admin", "set-limits", *base, "--key", admin_key, "--limit", "maxHours=5")
    assert code == 0, out
    code, out = invoke("admin", "grant-operator", *base, "--key", admin_key, accounts.other)
    assert code == 0, out
    code, out = invoke("admin", "pause", *base, "--key", admin_key)
    assert code == 0, out
    code, out = invoke("submit", *base, "--key", accounts.key(accounts.user), "--no-wait")
    assert code == 1
    assert_one_line_error(out, "EnforcedPause")
    code, out = invoke("admin", "unpause", *base, "--key", admin_key)
    assert code == 0, out
    code, out = invoke(
        "submit", *base, "--key", accounts.key(accounts.user), "--hours", "6", "--no-wait"
    )
    assert_one_line_error(out, "HoursOverLimit", "6", "5")


def test_user_mistakes_are_one_line(base: list[str], accounts: Accounts, anvil: object) -> None:
    user_key = accounts.key(accounts.user)
    code, out = invoke("status", "1", "--rpc-url", base[1], "--contract", "0x1234")
    assert code == 2
    assert_one_line_error(out, "--contract", "not an Ethereum address")

    code, out = invoke("cancel", "1", *base)
    assert code == 2
    assert_one_line_error(out, "Missing option '--key'", "BRIDGE_USER_KEY")

    code, out = invoke("status", "one", *base)
    assert code == 2
    assert_one_line_error(out, "job_id")

    code, out = invoke("submit", *base, "--key", "not-a-key", "--no-wait")
    assert code == 2
    assert_one_line_error(out, "--key", "not a valid private key")

    dead = f"http://127.0.0.1:{free_port()}"
    code, out = invoke("status", "1", "--rpc-url", dead, "--contract", base[3])
    assert code == 1
    assert_one_line_error(out, "cannot reach")

    poor = Account.create()
    code, out = invoke("submit", *base, "--key", "0x" + bytes(poor.key).hex(), "--no-wait")
    assert code == 1
    assert_one_line_error(out, "ETH", poor.address)
    assert bytes(poor.key).hex() not in out

    code, out = invoke("submit", *base, "--key", user_key, "--no-wait")
    job_id = out.split("job ")[1].split()[0]
    code, out = invoke("cancel", job_id, *base, "--key", accounts.key(accounts.other))
    assert code == 1
    assert_one_line_error(out, "NotRequester", job_id, accounts.other)

    code, out = invoke("submit", *base, "--key", user_key, "--vcpus", "0", "--no-wait")
    assert code == 2
    assert_one_line_error(out, "--vcpus", "between 1 and 65535")
    code, out = invoke("status", "999", *base)
    assert_one_line_error(out, "does not exist")


def test_config_check_names_each_problem(
    monkeypatch: pytest.MonkeyPatch, base: list[str], accounts: Accounts, tmp_path: Path
) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    code, out = invoke("config", "check")
    assert code == 1
    assert "BRIDGE_RPC_URL is required" in out and "BRIDGE_CE_AUTHENTICATOR is required" in out

    secret = "a1b2c3-secret-authenticator"
    other_key = accounts.key(accounts.other)
    monkeypatch.setenv("BRIDGE_RPC_URL", base[1])
    monkeypatch.setenv("BRIDGE_CONTRACT_ADDRESS", base[3])
    monkeypatch.setenv("BRIDGE_OPERATOR_KEY", other_key)
    monkeypatch.setenv("BRIDGE_CE_URL", f"http://127.0.0.1:{free_port()}/remotejobs/v2/")
    monkeypatch.setenv("BRIDGE_CE_AUTHENTICATOR", secret)
    monkeypatch.setenv("BRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    code, out = invoke("config", "check")
    assert code == 1
    assert "lacks OPERATOR_ROLE" in out
    assert "BRIDGE_CE_URL: cannot reach CE" in out
    assert secret not in out and other_key.removeprefix("0x") not in out


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "name", ["wolfram-job.json", "docker-job-with-inputs.json", "callback-job.json"]
)
def test_example_job_files_submit_and_the_emulator_accepts_them(
    name: str, base: list[str], accounts: Accounts, chain: Web3
) -> None:
    """Each example under examples/ goes on-chain as written (the spec read back from
    JobSubmitted, the callback gas from getJob) and is a job-create body the emulator accepts."""
    import httpx

    from bridge.chain.actions import EscrowClient
    from bridge.chain.deploy import escrow
    from bridge.chain.spec import JobSpec
    from bridge.jobdoc import parse_job_file
    from bridge.remote.emulator import EmulatorConfig
    from bridge.remote.server import EmulatorServer

    path = EXAMPLES / name
    document = parse_job_file(json.loads(path.read_text()))
    key = accounts.key(accounts.user)
    code, out = invoke("submit", *base, "--key", key, "--job-file", str(path), "--no-wait")
    assert code == 0, out
    job_id = int(out.split("job ")[1].split()[0])
    (event,) = (
        escrow(chain, base[3])
        .events.JobSubmitted()
        .get_logs(from_block=0, argument_filters={"jobId": job_id})
    )
    assert JobSpec.from_abi(event["args"]["spec"]) == document.to_spec()
    assert EscrowClient(base[1], base[3]).job(job_id).callback_gas_limit == (
        document.callback_gas_limit
    )

    with EmulatorServer(EmulatorConfig(authenticators=frozenset({"example-auth"}))) as server:
        body = {"authenticator": "example-auth", **document.to_body()}
        response = httpx.post(server.base_url + "job-create", json=body)
        assert response.status_code == 200, response.text


def test_deploy_json_prints_the_default_pricing_and_limits_the_readme_states(
    chain: Web3, anvil: object, accounts: Accounts
) -> None:
    import re

    from bridge.chain.deploy import escrow

    url = anvil.url  # type: ignore[attr-defined]
    code, out = invoke("deploy", "--rpc-url", url, "--key", accounts.key(accounts.admin), "--json")
    assert code == 0, out
    summary = json.loads(out)
    contract = escrow(chain, summary["address"])
    assert list(summary["pricing"].values()) == list(contract.functions.pricing().call())
    assert list(summary["limits"].values()) == list(contract.functions.limits().call())
    assert summary["deadlineGrace"] == contract.functions.deadlineGrace().call()

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- defaults:start -->", 1)[1].split("<!-- defaults:end -->", 1)[0]
    stated = {m[1]: int(m[2]) for m in re.finditer(r"\| `(\w+)` \| (\d+) \|", table)}
    assert stated == {
        **summary["pricing"],
        **summary["limits"],
        "deadlineGrace": summary["deadlineGrace"],
    }, "README.md's default pricing and limits differ from a fresh deployment's"

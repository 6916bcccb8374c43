"""The operator key and the CE authenticator appear nowhere they should not: not in logs, API
responses, error messages, CLI output, the database or chain data, over a full run with
successes, failures, a CE rejection and a wrong authenticator."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner
from web3.types import TxData, TxParams, Wei

from bridge.chain.spec import InputFile, JobSpec, Resources, Status
from bridge.cli import app
from bridge.config import load_settings
from bridge.devstack import LocalStack
from bridge.errors import BridgeError, ConfigError
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest
from bridge.remote.emulator import EmulatorConfig

REJECTED_APP = "charityengine:rejected"


def _needles(key: str, authenticator: str) -> list[str]:
    bare = key.removeprefix("0x").lower()
    return [bare, bare.upper(), authenticator, authenticator.encode().hex()]


def _assert_clean(where: str, haystack: str, needles: list[str]) -> None:
    for needle in needles:
        assert needle not in haystack, f"a secret leaked into {where}"


def _spec(command: str, app_name: str = "charityengine:wolframengine") -> JobSpec:
    return JobSpec(
        app_name,
        command,
        Resources(1, 256, 256),
        1,
        (InputFile("in.txt", "https://example.org/in.txt"),),
    )


def test_no_secret_anywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=0.2,
        fail_commands=frozenset({"exit 1"}),
        reject_apps=frozenset({REJECTED_APP}),
    )
    with LocalStack(tmp_path, block_time=None, confirmations=0, emulator_config=config) as stack:
        operator_key = stack.roles.keys[1]
        needles = _needles(operator_key, stack.settings.ce_authenticator.get_secret_value())
        user: TxParams = {"from": stack.roles.user}
        job_ids = []
        for spec in (
            _spec("echo ok > output/out.txt"),
            _spec("run && exit 1"),
            _spec("echo x", REJECTED_APP),
        ):
            price = stack.escrow.functions.quote(spec.to_abi(), 0).call()
            job_ids.append(stack.escrow.functions.nextJobId().call())
            tx = stack.escrow.functions.submitJob(spec.to_abi(), 0).transact(
                {**user, "value": Wei(price)}
            )
            stack.w3.eth.wait_for_transaction_receipt(tx)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses = [Status(stack.escrow.functions.getJob(j).call()[1]) for j in job_ids]
            if all(s.is_terminal for s in statuses):
                break
            time.sleep(0.2)
        assert statuses == [Status.COMPLETED, Status.FAILED, Status.FAILED]

        # API responses, including error ones.
        api = stack.api_url
        bodies = []
        with httpx.Client(timeout=10) as http:
            for path in ("/healthz", "/readyz", "/metrics", "/jobs", "/openapi.json"):
                bodies.append(http.get(api + path).text)
            for job_id in job_ids:
                bodies.append(http.get(f"{api}/jobs/{job_id}").text)
                bodies.append(http.get(f"{api}/jobs/{job_id}/outputs/").text)
            bodies.append(http.post(api + "/admin/pause").text)
            bodies.append(
                http.post(api + "/admin/pause", headers={"Authorization": "Bearer wrong"}).text
            )
        _assert_clean("API responses", "\n".join(bodies), needles)

        # Error messages: a bad config that carries the key, a wrong authenticator at CE.
        messages = []
        try:
            load_settings(
                rpc_url=stack.settings.rpc_url,
                contract_address="not-an-address",
                operator_key=operator_key,
                ce_authenticator=stack.settings.ce_authenticator.get_secret_value(),
            )
        except ConfigError as exc:
            messages.append(str(exc))
        messages.append(repr(stack.settings))
        wrong = stack.settings.ce_authenticator.get_secret_value()[::-1]
        assert stack.emulator is not None
        with CEClient(stack.emulator.base_url, wrong, max_attempts=1) as client:
            request = CEJobRequest("charityengine:x", "echo", 1, 1, 1, 0, 0, 1)
            try:
                client.create_job(request, "k")
            except BridgeError as exc:
                messages.append(f"{exc} {exc!r}")
        _assert_clean("error messages", "\n".join(messages), [*needles, wrong])

        # CLI output.
        runner = CliRunner()
        env = {
            "BRIDGE_RPC_URL": stack.settings.rpc_url,
            "BRIDGE_CONTRACT_ADDRESS": stack.escrow.address,
            "BRIDGE_OPERATOR_KEY": operator_key,
            "BRIDGE_CE_URL": stack.settings.ce_url,
            "BRIDGE_CE_AUTHENTICATOR": stack.settings.ce_authenticator.get_secret_value(),
            "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'check.db'}",
        }
        outputs = [
            runner.invoke(app, ["config", "check"], env=env).output,
            runner.invoke(
                app, ["config", "check"], env={**env, "BRIDGE_CONFIRMATIONS": "-3"}
            ).output,
            runner.invoke(app, ["status", str(job_ids[0])], env=env).output,
            runner.invoke(app, ["jobs"], env=env).output,
        ]
        _assert_clean("CLI output", "\n".join(outputs), needles)

        # The database.
        assert stack.bridge is not None
        dump = []
        with stack.bridge.db.connect() as conn:
            for table in ("job", "remote_call", "update_outbox", "chain_tx", "output_file"):
                for row in conn.execute(text(f"SELECT * FROM {table}")):
                    dump.append(repr(tuple(row)))
        _assert_clean("the database", "\n".join(dump), needles)

        # Chain data: every transaction's input and every log of the escrow.
        chain = []
        head = stack.w3.eth.block_number
        for number in range(head + 1):
            block = stack.w3.eth.get_block(number, full_transactions=True)
            # full_transactions=True: the block holds TxData (the stub's union cannot say so)
            for sent in cast(Sequence[TxData], block["transactions"]):
                chain.append(bytes(sent["input"]).hex())
        for entry in stack.w3.eth.get_logs(
            {"address": stack.escrow.address, "fromBlock": 0, "toBlock": head}
        ):
            chain.append(bytes(entry["data"]).hex())
        _assert_clean("chain data", "\n".join(chain), needles)

    # Logs of the whole run.
    _assert_clean("logs", "\n".join(r.getMessage() for r in caplog.records), needles)
    assert caplog.records, "the run should have logged something"


def test_json_logs_follow_one_job_across_components(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's log records carry its id, its remote job id and the hashes of its transactions,
    and the JSON formatter emits them as fields."""
    import json

    from bridge.logs import JsonFormatter

    caplog.set_level(logging.INFO)
    config = EmulatorConfig(provisioning_seconds=0, downloading_seconds=0, running_seconds=0.1)
    with LocalStack(tmp_path, block_time=None, confirmations=0, emulator_config=config) as stack:
        spec = _spec("echo ok > output/out.txt")
        price = stack.escrow.functions.quote(spec.to_abi(), 0).call()
        job_id = stack.escrow.functions.nextJobId().call()
        tx = stack.escrow.functions.submitJob(spec.to_abi(), 0).transact(
            {"from": stack.roles.user, "value": price}
        )
        stack.w3.eth.wait_for_transaction_receipt(tx)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Status(stack.escrow.functions.getJob(job_id).call()[1]) is Status.COMPLETED:
                break
            time.sleep(0.2)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    mine = [x for x in lines if x.get("job_id") == job_id or job_id in x.get("job_ids", [])]
    loggers = {x["logger"] for x in mine}
    assert {"bridge.engine", "bridge.tx"} <= loggers, loggers
    assert any(x.get("remote_job_id") for x in mine), "no record names the remote job"
    assert any(x.get("tx_hash") == "0x" + bytes(tx).hex() for x in mine), "no submit tx"
    assert len({x["tx_hash"] for x in mine if "tx_hash" in x}) >= 2, "no bridge tx for the job"


RPC_USER, RPC_PASSWORD = "rpcuser", "rpcpass1234"
PATH_TOKEN = "0123456789abcdef0123456789abcdef"
QUERY_KEY = "SECRETKEY1"


def test_credentials_in_the_rpc_url_reach_no_log_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider key in ``BRIDGE_RPC_URL`` (user info, a query value, a path token) appears in
    no log line, error, readiness answer or ``config check`` line, with the node answering,
    failing and gone (issue 9: RPC URLs often carry provider keys)."""
    from bridge.api.app import create_app, serve_api_in_thread
    from bridge.engine.service import Bridge
    from bridge.logs import redact_url
    from tests.faults.rpc_proxy import RpcFaultProxy

    caplog.set_level(logging.DEBUG)
    needles = [RPC_PASSWORD, f"{RPC_USER}:", PATH_TOKEN, QUERY_KEY]
    seen: list[str] = []
    with LocalStack(tmp_path, block_time=None, confirmations=0, start_bridge=False) as stack:
        assert stack.anvil is not None
        proxy = RpcFaultProxy(stack.anvil.url).start()
        host = proxy.url.removeprefix("http://")
        url = f"http://{RPC_USER}:{RPC_PASSWORD}@{host}/v3/{PATH_TOKEN}?apikey={QUERY_KEY}"
        assert redact_url(url) == f"http://***@{host}/v3/***?apikey=***"
        settings = stack.settings.model_copy(update={"rpc_url": url})
        bridge = Bridge.from_settings(settings)
        api = serve_api_in_thread(create_app(settings, bridge), "127.0.0.1", 0)
        try:
            bridge.scan_once()  # the node answers
            proxy.rate = 1.0  # then every request fails: resets, drops, 502s, delays, lies
            proxy.weights = {"reset": 1.0, "http5xx": 1.0}
            for _ in range(5):
                try:
                    bridge.scan_once()
                except BridgeError as exc:
                    seen.append(str(exc))
            proxy.stop()  # then the node is gone
            for step in (bridge.scan_once, bridge.work_once, bridge.tx_once):
                try:
                    step()
                except BridgeError as exc:
                    seen.append(str(exc))
            seen.append(httpx.get(f"{api.url}/readyz", timeout=30).text)
            with pytest.raises(BridgeError) as gone:
                Bridge.from_settings(settings)
            seen.append(str(gone.value))
            env = {"BRIDGE_RPC_URL": url, "BRIDGE_CONTRACT_ADDRESS": settings.contract_address}
            env |= {
                "BRIDGE_OPERATOR_KEY": stack.roles.keys[1],
                "BRIDGE_CE_URL": settings.ce_url,
                "BRIDGE_CE_AUTHENTICATOR": "x",
                "BRIDGE_DATABASE_URL": settings.database_url,
            }
            seen.append(CliRunner().invoke(app, ["config", "check"], env=env).output)
            seen.append(CliRunner().invoke(app, ["status", "1"], env=env).output)
        finally:
            api.stop()
            bridge.stop()
    assert any("***" in answer for answer in seen), seen
    for answer in seen:
        _assert_clean("an error or answer", answer, needles)
    _assert_clean("logs", caplog.text, needles)

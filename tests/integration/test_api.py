"""The bridge's HTTP API over real HTTP, served by a whole ``LocalStack`` (Anvil, the CE emulator,
the contracts and the bridge in this process).

One stack serves the module (starting it is most of the cost); each test submits its own jobs.
Checks: a completed job's timeline; the files behind the on-chain ``resultURI`` hash to the
on-chain ``resultHash``; readiness, also with CE unreachable; admin authentication; pausing and
resuming dispatch; failing a job refunds its requester on-chain; the metric names, with a real
``CallbackFailed``; and a schemathesis run against the live OpenAPI schema (no 5xx, no answer
that breaks the schema).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_typing import ChecksumAddress
from sqlmodel import Session, col, select
from web3 import Web3
from web3.types import TxReceipt

from bridge.api import create_app, serve_api_in_thread
from bridge.chain.spec import Status
from bridge.devchain import free_port
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.engine.worker import INLINE_JOB_BYTES
from bridge.remote.emulator import EmulatorConfig
from bridge.results import result_hash
from bridge.store.models import OutputFile
from bridge.waiting import wait_until
from tests.builders import get_job, spec, submit_job, submit_via_consumer

TOKEN = "integration-admin-token-3f9a"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NEVER_FINISHES = "charityengine:sleep"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Half-second blocks, one confirmation: the same pipeline as production, just faster."""
    config = EmulatorConfig(
        provisioning_seconds=0.1,
        downloading_seconds=0.1,
        running_seconds=0.3,
        never_finish_apps=frozenset({NEVER_FINISHES}),
    )
    with LocalStack(
        tmp_path_factory.mktemp("api-stack"),
        block_time=0.5,
        confirmations=1,
        emulator_config=config,
        settings={"admin_token": TOKEN},
    ) as local:
        yield local


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as client:
        yield client


def user_of(stack: LocalStack) -> ChecksumAddress:
    """The stack's user account (an account's address: checksummed already)."""
    return Web3.to_checksum_address(stack.roles.user)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``condition`` until it returns something truthy; returns that."""
    return wait_until(condition, timeout, 0.1, what, error=AssertionError)


def api_job(api: httpx.Client, job_id: int) -> dict[str, Any] | None:
    answer = api.get(f"/jobs/{job_id}")
    return answer.json() if answer.status_code == 200 else None


def job_in_state(api: httpx.Client, job_id: int, *states: str) -> Callable[[], Any]:
    def check() -> dict[str, Any] | None:
        job = api_job(api, job_id)
        return job if job is not None and job["state"] in states else None

    return check


def completed_uri(stack: LocalStack, job_id: int) -> str:
    (event,) = stack.escrow.events.JobCompleted().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )
    return str(event["args"]["resultURI"])


# ---------------------------------------------------------------------------- jobs


@pytest.fixture(scope="module")
def completed_job(stack: LocalStack) -> tuple[int, TxReceipt]:
    """A typical job, submitted and settled as Completed: its id and submission receipt."""
    job_id, receipt = submit_job(stack.w3, stack.escrow, user_of(stack))
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as api:
        wait_for(job_in_state(api, job_id, "settled"), 60, f"job {job_id} settled")
        # The scanner may read JobCompleted before the writer has confirmed the transaction
        # that wrote it: the timeline is whole once every update and transaction has its end.
        wait_for(lambda: writes_confirmed(api_job(api, job_id)), 60, f"job {job_id}'s writes")
    return job_id, receipt


def writes_confirmed(job: dict[str, Any] | None) -> bool:
    """Every update in the job's timeline is applied or skipped and every transaction ended."""
    if job is None:
        return False
    timeline = job["timeline"]
    return all(e["applied"] is not None for e in timeline if e["kind"] == "update") and all(
        e["tx_state"] not in ("unstarted", "unconfirmed")
        for e in timeline
        if e["kind"] == "transaction"
    )


def test_a_completed_job_has_its_timeline_and_its_files_hash_on_chain(
    stack: LocalStack, api: httpx.Client, completed_job: tuple[int, TxReceipt]
) -> None:
    job_id, receipt = completed_job
    job = api_job(api, job_id)
    assert job is not None
    onchain = get_job(stack.escrow, job_id)
    assert onchain["status"] is Status.COMPLETED
    assert job["onchain_status"] == "completed" and job["outcome"] == "completed"
    assert job["requester"] == stack.roles.user

    timeline = job["timeline"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    submitted = timeline[0]
    assert submitted["kind"] == "submitted"
    assert submitted["tx_hash"] == Web3.to_hex(receipt["transactionHash"])
    assert submitted["block_number"] == receipt["blockNumber"]
    calls = [(e["call"], e["ok"]) for e in timeline if e["kind"] == "remote_call"]
    assert ("create", True) in calls and ("download", True) in calls
    updates = {e["status"]: e for e in timeline if e["kind"] == "update"}
    assert {"accepted", "completed"} <= set(updates)
    for update in updates.values():
        assert update["applied"] is True and update["tx_hash"], update
    assert updates["completed"]["data"] == completed_uri(stack, job_id)
    txs = [e for e in timeline if e["kind"] == "transaction"]
    assert {e["tx_hash"] for e in txs} >= {u["tx_hash"] for u in updates.values()}
    assert all(e["tx_state"] == "confirmed" and e["gas_used"] > 0 for e in txs)

    # The resultURI written on-chain serves the manifest and the files; they hash on-chain.
    uri = completed_uri(stack, job_id)
    assert uri == f"{stack.api_url}/jobs/{job_id}/outputs/"
    listing = httpx.get(uri).json()
    assert listing["result_hash"] == "0x" + bytes(onchain["resultHash"]).hex()
    files = {}
    for item in listing["files"]:
        answer = httpx.get(item["url"])
        assert answer.status_code == 200 and answer.headers["content-type"]
        files[item["path"]] = answer.content
    assert files, "the job produced no files"
    assert result_hash(files) == bytes(onchain["resultHash"])
    assert api.get(f"/jobs/{job_id}/outputs/no-such-file").status_code == 404

    page = api.get("/jobs", params={"requester": stack.roles.user.lower(), "state": "settled"})
    assert job_id in [j["job_id"] for j in page.json()["items"]]


def test_small_files_are_served_from_their_rows_and_large_ones_from_the_file_store(
    stack: LocalStack, api: httpx.Client
) -> None:
    # 20 generated files big/NNNNNN.bin of 4,000 bytes, meta/spec.json and out.txt (under
    # 1 KiB each), downloaded in that order: small files are kept in their rows up to 64 KiB a
    # job (16 big ones, then the two), the other 4 go to the file store; every one is served
    # and hashes on-chain alike.
    command = "echo x > output/out.txt # ce-emulator:outputs=20x4000"
    job_id, _ = submit_job(stack.w3, stack.escrow, user_of(stack), spec(command_line=command))
    wait_for(job_in_state(api, job_id, "settled"), 60, f"job {job_id} settled")
    onchain = get_job(stack.escrow, job_id)
    assert onchain["status"] is Status.COMPLETED

    assert stack.bridge is not None
    with Session(stack.bridge.db) as session:
        rows = session.exec(select(OutputFile).where(col(OutputFile.job_id) == job_id)).all()
    inline = {r.path: r for r in rows if r.content is not None}
    stored = {r.path: r for r in rows if r.content is None}
    assert {"out.txt", "meta/spec.json"} <= set(inline)
    assert len(rows) == 22 and (len(inline), len(stored)) == (18, 4)
    assert INLINE_JOB_BYTES - 4000 < sum(r.size for r in inline.values()) <= INLINE_JOB_BYTES
    objects = stack.settings.output_root / "objects"
    for row in stored.values():
        assert (objects / row.sha256[:2] / row.sha256).stat().st_size == row.size == 4000
    for row in inline.values():
        assert not (objects / row.sha256[:2] / row.sha256).exists()
        assert hashlib.sha256(row.content or b"").hexdigest() == row.sha256

    files = {}
    for item in api.get(f"/jobs/{job_id}/outputs/").json()["files"]:
        answer = httpx.get(item["url"])
        assert answer.status_code == 200 and answer.headers["etag"] == f'"{item["sha256"]}"'
        files[item["path"]] = answer.content
    assert set(files) == {r.path for r in rows}
    assert result_hash(files) == bytes(onchain["resultHash"])
    # The start-up sweep keeps every object a row names and takes nothing a row holds.
    assert stack.bridge.sweep_outputs() == (0, 0)


# ---------------------------------------------------------------------------- health


def test_ready_and_then_not_when_ce_is_unreachable(stack: LocalStack, api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = wait_for(lambda: api.get("/readyz").status_code == 200, 30, "readyz 200")
    assert ready
    checks = {c["name"]: c["ok"] for c in api.get("/readyz").json()["checks"]}
    assert checks == {"rpc": True, "database": True, "scan_lag": True, "ce": True, "writer": True}

    # The same bridge, but CE at an address where nothing listens.
    dead = f"http://127.0.0.1:{free_port()}/remotejobs/v2/"
    settings = stack.settings.model_copy(update={"ce_url": dead})
    bridge = Bridge.from_settings(settings)
    server = serve_api_in_thread(create_app(settings, bridge), "127.0.0.1", 0)
    try:
        answer = httpx.get(f"{server.url}/readyz", timeout=30)
    finally:
        server.stop()
        bridge.stop()
    assert answer.status_code == 503
    checks = {c["name"]: c for c in answer.json()["checks"]}
    assert [name for name, c in checks.items() if not c["ok"]] == ["ce"]
    assert "CE API unreachable" in checks["ce"]["message"]
    assert stack.settings.ce_authenticator.get_secret_value() not in answer.text


# ---------------------------------------------------------------------------- admin


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}]
)
def test_admin_needs_the_token(api: httpx.Client, headers: dict[str, str]) -> None:
    for path in ("/admin/pause", "/admin/resume", "/admin/jobs/0/retry"):
        answer = api.post(path, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert "detail" in answer.json() and TOKEN not in answer.text
    answer = api.post("/admin/jobs/0/fail", json={"reason": "x"}, headers=headers)
    assert answer.status_code == 401


def test_pause_holds_new_jobs_and_resume_dispatches_them(
    stack: LocalStack, api: httpx.Client
) -> None:
    assert api.post("/admin/pause", headers=ADMIN).json() == {"dispatch_paused": True}
    try:
        job_id, receipt = submit_job(stack.w3, stack.escrow, user_of(stack))
        wait_for(lambda: api_job(api, job_id), 30, f"job {job_id} scanned")
        # Let the worker run many rounds (every 62 ms) while the chain moves on 3 blocks.
        target = receipt["blockNumber"] + 4
        wait_for(lambda: stack.w3.eth.block_number >= target, 30, "three more blocks")
        job = api_job(api, job_id)
        assert job is not None and job["state"] == "new", job
        assert not [e for e in job["timeline"] if e["kind"] == "remote_call"]
    finally:
        assert api.post("/admin/resume", headers=ADMIN).json() == {"dispatch_paused": False}
    wait_for(
        job_in_state(api, job_id, "dispatched", "running", "finishing", "settling", "settled"),
        30,
        f"job {job_id} dispatched after resume",
    )


def test_admin_fail_refunds_the_requester_on_chain(stack: LocalStack, api: httpx.Client) -> None:
    user = user_of(stack)
    job_id, _ = submit_job(stack.w3, stack.escrow, user, spec(app=NEVER_FINISHES))
    payment = get_job(stack.escrow, job_id)["payment"]
    wait_for(job_in_state(api, job_id, "dispatched", "running"), 30, f"job {job_id} on CE")
    credit_before = stack.escrow.functions.creditOf(user).call()

    answer = api.post(f"/admin/jobs/{job_id}/fail", json={"reason": "stuck"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "settling"
    wait_for(
        lambda: get_job(stack.escrow, job_id)["status"] is Status.FAILED, 30, "Failed on-chain"
    )
    assert stack.escrow.functions.creditOf(user).call() == credit_before + payment
    (failed,) = stack.escrow.events.JobFailed().get_logs(
        from_block=0, argument_filters={"jobId": job_id}
    )
    assert failed["args"]["reason"] == "failed by the operator: stuck"

    again = api.post(f"/admin/jobs/{job_id}/fail", json={"reason": "again"}, headers=ADMIN)
    assert again.status_code == 409
    wait_for(job_in_state(api, job_id, "settled"), 30, f"job {job_id} settled")
    assert api.post(f"/admin/jobs/{job_id}/retry", headers=ADMIN).status_code == 409
    assert api.post("/admin/jobs/999999/retry", headers=ADMIN).status_code == 404


# ---------------------------------------------------------------------------- metrics

METRIC_NAMES = (
    "ce_bridge_chain_head_block",
    "ce_bridge_scan_cursor_block",
    "ce_bridge_scan_lag_blocks",
    'ce_bridge_jobs{state="settled"}',
    'ce_bridge_ce_call_seconds_bucket{le="0.1",op="job-create"}',
    'ce_bridge_ce_call_seconds_count{op="job-status"}',
    "ce_bridge_ce_errors_total",
    'ce_bridge_transactions{state="confirmed"}',
    "ce_bridge_transactions_pending",
    "ce_bridge_transactions_replaced_total",
    "ce_bridge_transactions_failed_total",
    "ce_bridge_gas_used_total",
    "ce_bridge_updates_waiting",
    "ce_bridge_operator_balance_wei",
    "ce_bridge_dispatch_paused",
    "ce_bridge_writer_active",
    "ce_bridge_callback_failures_total",
)


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_metrics_name_everything_and_count_a_failed_callback(
    stack: LocalStack, api: httpx.Client
) -> None:
    # 1000 gas cannot pay for the consumer's storage write: the callback fails, the job does not.
    job_id, _ = submit_via_consumer(
        stack.w3, stack.escrow, stack.consumer, user_of(stack), callback_gas_limit=1000
    )
    wait_for(job_in_state(api, job_id, "settled"), 60, f"job {job_id} settled")
    assert get_job(stack.escrow, job_id)["status"] is Status.COMPLETED
    text = wait_for(
        lambda: (
            (t := api.get("/metrics").text)
            and (metric(t, "ce_bridge_callback_failures_total") or 0) >= 1
            and t
        ),
        30,
        "the CallbackFailed to be counted",
    )
    for name in METRIC_NAMES:
        assert name in text, name
    assert (metric(text, "ce_bridge_gas_used_total") or 0) > 0
    assert metric(text, "ce_bridge_writer_active") == 1  # the one process writes
    balance = stack.w3.eth.get_balance(Web3.to_checksum_address(stack.roles.operator))
    assert metric(text, "ce_bridge_operator_balance_wei") == pytest.approx(balance, rel=1e-3)
    assert stack.settings.ce_authenticator.get_secret_value() not in text


# ---------------------------------------------------------------------------- schemathesis

#: Bounds of the schemathesis run: examples per operation and phase, parallel workers, a fixed
#: seed (the output prints it; change it to explore other inputs), and a hang guard (a timeout,
#: not a speed check: tests never assert on wall-clock time).
ST_MAX_EXAMPLES = 50
ST_WORKERS = 4
ST_SEED = 20261127
ST_HANG_SECONDS = 600.0


def test_live_api_conforms_to_its_schema(
    stack: LocalStack, tmp_path: Path, completed_job: tuple[int, TxReceipt]
) -> None:
    """schemathesis against the live app, which has at least one completed job (the stateful
    phase follows ``GET /jobs`` to real ids): every phase (examples, coverage, fuzzing, stateful)
    and every check (no 5xx, statuses, content types, headers and bodies as documented, invalid
    input rejected, valid input accepted, auth enforced: ``ignored_auth`` repeats requests
    without the admin token)."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{stack.api_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(ST_MAX_EXAMPLES),
        "--workers", str(ST_WORKERS),
        "--seed", str(ST_SEED),
        "--generation-database", "none",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--no-color",
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=ST_HANG_SECONDS
    )
    elapsed = time.monotonic() - started
    report = result.stdout[-12_000:] + result.stderr[-3_000:]
    assert result.returncode == 0, report
    print(f"schemathesis: {elapsed:.1f}s\n{result.stdout[-1500:]}")  # shown with pytest -s

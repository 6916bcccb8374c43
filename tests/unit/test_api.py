"""The HTTP API without a chain: ``create_app`` over a SQLite file, through FastAPI's TestClient.

Jobs, timelines, outputs and metrics come from rows written here; admin actions and readiness
run against a ``Bridge`` whose CE client talks to a programmable local HTTP server
(``tests/httpfake.py``) and whose reader is a stub, so nothing here needs Anvil or the emulator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from web3.exceptions import BlockNotFound

from bridge.api import create_app
from bridge.chain.spec import Status
from bridge.config import Settings, load_settings
from bridge.devchain import free_port
from bridge.engine.service import Bridge
from bridge.engine.states import JobState
from bridge.errors import RpcUnavailable
from bridge.remote.client import CEClient
from bridge.results import build_manifest, result_hash
from bridge.store.db import open_database
from bridge.store.models import ChainTx, OutputFile, RemoteCall, ScanCursor, TxState, Update
from tests.builders import stored_job
from tests.httpfake import Answer, FakeServer, Seen, json_answer

TOKEN = "admin-token-for-tests-7c1d"
AUTHENTICATOR = "ce-secret-authenticator-0b9e"
OPERATOR_KEY = "0x" + "5a" * 32
CONTRACT = "0x" + "c0" * 20
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FILES = {"out.txt": b"4\n", "sub/dir/data.csv": b"a,b\n1,2\n", "z.bin": bytes(range(256))}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rpc_url": "http://127.0.0.1:9",
        "contract_address": CONTRACT,
        "operator_key": OPERATOR_KEY,
        "ce_url": "https://ce.example/remotejobs/v2/",
        "ce_authenticator": AUTHENTICATOR,
        "database_url": f"sqlite:///{tmp_path / 'bridge.db'}",
        "admin_token": TOKEN,
        "confirmations": 2,
        "start_block": 0,
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    engine = open_database(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings, db: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db)) as test_client:
        yield test_client


def seed(db: Engine) -> None:
    """Job 1 completed with files, updates, txs and CE calls; jobs 2..4 in other states."""
    digest = "0x" + result_hash(FILES).hex()
    with Session(db) as s:
        s.add(
            stored_job(
                1,
                state=JobState.SETTLED,
                onchain_status=Status.COMPLETED,
                remote_job_id="ce-1",
                result_hash=digest,
                result_uri="http://bridge.example/jobs/1/outputs/",
                outcome=int(Status.COMPLETED),
                created_at=T0,
            )
        )
        s.add(stored_job(2, state=JobState.RUNNING, onchain_status=Status.RUNNING))
        s.add(stored_job(3, requester="0x" + "CD" * 20))
        s.add(stored_job(4, state=JobState.SETTLED, onchain_status=Status.FAILED))
        for path, content in FILES.items():
            sha = hashlib.sha256(content).hexdigest()
            s.add(OutputFile(job_id=1, path=path, sha256=sha, size=len(content), content=content))
        s.add(RemoteCall(job_id=1, kind="create", ok=True, detail="ce-1", at=T0 + timedelta(1)))
        s.add(RemoteCall(job_id=1, kind="status", ok=False, detail="busy", at=T0 + timedelta(2)))
        tx = ChainTx(
            sender="0x" + "aa" * 20,
            nonce=7,
            attempt=1,
            state=TxState.CONFIRMED,
            tx_hash="0x" + "77" * 32,
            mined_block=120,
            gas_used=90_000,
            created_at=T0 + timedelta(4),
        )
        s.add(tx)
        s.commit()
        s.add(Update(job_id=1, status=2, data="ce-1", created_at=T0 + timedelta(3)))
        s.add(
            Update(
                job_id=1,
                status=4,
                result_hash=digest,
                data="http://bridge.example/jobs/1/outputs/",
                tx_id=tx.id,
                applied=True,
                created_at=T0 + timedelta(3, 1),
            )
        )
        s.commit()


# ---------------------------------------------------------------------------- health


def test_healthz_is_ok_and_readyz_names_what_is_missing(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = {c["name"]: c for c in answer.json()["checks"]}
    assert set(checks) == {"rpc", "database", "scan_lag", "ce", "writer"}
    assert checks["database"]["ok"] is True
    assert checks["ce"] == {"name": "ce", "ok": False, "message": "no bridge runs in this process"}


# ---------------------------------------------------------------------------- jobs


def test_jobs_are_listed_newest_first_and_filtered(client: TestClient, db: Engine) -> None:
    seed(db)
    page = client.get("/jobs").json()
    assert page["total"] == 4 and [j["job_id"] for j in page["items"]] == [4, 3, 2, 1]
    assert page["items"][3]["onchain_status"] == "completed"
    assert page["items"][3]["state"] == "settled"

    def ids(query: str) -> list[int]:
        answer = client.get(f"/jobs?{query}")
        assert answer.status_code == 200, answer.text
        return [j["job_id"] for j in answer.json()["items"]]

    assert ids("state=settled") == [4, 1]
    assert ids("status=failed") == [4]
    assert ids("state=settled&status=completed") == [1]
    assert ids("requester=0x" + "cd" * 20) == [3]  # any case
    assert ids("state=running&requester=0x" + "cd" * 20) == []
    second = client.get("/jobs?limit=2&offset=2").json()
    assert second["total"] == 4 and [j["job_id"] for j in second["items"]] == [2, 1]
    for bad in ("state=done", "status=new", "requester=0x12", "limit=0", "limit=501", "offset=-1"):
        assert client.get(f"/jobs?{bad}").status_code == 422, bad


def test_a_job_has_one_timeline_in_time_order(client: TestClient, db: Engine) -> None:
    seed(db)
    job = client.get("/jobs/1").json()
    assert job["spec"]["app"] == "charityengine:wolframengine"
    assert job["spec"]["input_files"][0]["filename"] == "data.csv"
    assert job["outcome"] == "completed"
    kinds = [(e["kind"], e.get("call") or e.get("status")) for e in job["timeline"]]
    assert kinds == [
        ("submitted", "submitted"),
        ("remote_call", "create"),
        ("remote_call", "status"),
        ("update", "accepted"),
        ("update", "completed"),
        ("transaction", None),
    ]
    times = [e["at"] for e in job["timeline"]]
    assert times == sorted(times)
    accepted, completed = job["timeline"][3], job["timeline"][4]
    assert accepted["applied"] is None and accepted["tx_hash"] is None
    assert completed["applied"] is True and completed["tx_hash"] == "0x" + "77" * 32
    assert completed["block_number"] == 120
    tx = job["timeline"][5]
    assert (tx["nonce"], tx["attempt"], tx["gas_used"], tx["tx_state"]) == (
        7,
        1,
        90_000,
        "confirmed",
    )
    assert client.get("/jobs/99").status_code == 404
    assert client.get("/jobs/99").json() == {"detail": "job 99 not found"}
    assert client.get(f"/jobs/{2**63}").status_code == 422


def test_outputs_hash_to_the_result_hash(client: TestClient, db: Engine) -> None:
    seed(db)
    listing = client.get("/jobs/1/outputs/").json()
    assert listing["result_hash"] == "0x" + result_hash(FILES).hex()
    assert "\n".join(listing["manifest"]) + "\n" == build_manifest(FILES).decode()
    fetched = {}
    for item in listing["files"]:
        answer = client.get(item["url"])
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        fetched[item["path"]] = answer.content
    assert fetched == FILES
    assert "0x" + result_hash(fetched).hex() == listing["result_hash"]
    assert client.get("/jobs/1/outputs/out.txt").headers["content-type"].startswith("text/plain")
    assert client.get("/jobs/1/outputs/z.bin").headers["content-type"] == (
        "application/octet-stream"
    )


@pytest.mark.parametrize(
    "path",
    ["/jobs/1/outputs/missing.txt", "/jobs/1/outputs/sub", "/jobs/1/outputs/a/%2E%2E/out.txt",
     "/jobs/1/outputs/%00", "/jobs/2/outputs/", "/jobs/2/outputs/out.txt", "/jobs/9/outputs/"],
)  # fmt: skip
def test_unknown_outputs_are_404(client: TestClient, db: Engine, path: str) -> None:
    seed(db)
    answer = client.get(path)
    assert answer.status_code == 404, answer.text
    assert isinstance(answer.json()["detail"], str)


# ---------------------------------------------------------------------------- admin


class StubReader:
    """Just enough of ``LogReader`` for readiness: a fixed head, or a dead node."""

    def __init__(self, head: int | None) -> None:
        self._head = head

    def head(self) -> int:
        if self._head is None:
            raise RpcUnavailable("eth_blockNumber failed: ConnectionError")
        return self._head


class StubEth:
    """Just enough of ``w3.eth`` for metrics: a balance and no CallbackFailed logs."""

    def get_balance(self, _address: str) -> int:
        return 3 * 10**18

    def get_logs(self, _filter: object) -> list[object]:
        return []

    def get_block(self, tag: object) -> dict[str, object]:
        raise BlockNotFound(f"block {tag!r} not found")  # no finalized block yet


class StubWeb3:
    eth = StubEth()


class StubTx:
    sender = "0x" + "aa" * 20


@pytest.fixture
def fake_ce() -> Iterator[tuple[str, list[str]]]:
    """A CE on 127.0.0.1 that aborts any job and knows no other: its base URL, and the
    endpoints called (in order)."""
    calls: list[str] = []

    def answer(seen: Seen) -> Answer:
        calls.append(seen.path.rsplit("/", 1)[-1])
        if seen.path.endswith("job-cancel"):
            return json_answer(200, {"jobId": seen.json()["jobId"], "status": "Aborted"})
        return json_answer(404, {"error": "unknown job"})

    with FakeServer(answer) as server:
        yield server.base_url, calls


def make_bridge(settings: Settings, db: Engine, ce_url: str, head: int | None = 100) -> Bridge:
    """A Bridge on ``db`` that is never started: CE at ``ce_url``, stub chain."""
    ce = CEClient(ce_url, AUTHENTICATOR, max_attempts=1)
    bridge = Bridge(
        settings,
        db=db,
        w3=cast(Any, StubWeb3()),
        ce=ce,
        tx=cast(Any, StubTx()),
        reader=cast(Any, StubReader(head)),
        escrow=cast(Any, None),
        chain_id=31337,
    )
    return bridge


@pytest.fixture
def bridge_client(
    settings: Settings, db: Engine, fake_ce: tuple[str, list[str]]
) -> Iterator[tuple[TestClient, Bridge, list[str]]]:
    ce_url, calls = fake_ce
    bridge = make_bridge(settings, db, ce_url)
    with TestClient(create_app(settings, bridge)) as test_client:
        yield test_client, bridge, calls


ADMIN_CALLS = [
    ("/admin/pause", None),
    ("/admin/resume", None),
    ("/admin/jobs/2/retry", None),
    ("/admin/jobs/2/fail", {"reason": "stuck"}),
]


@pytest.mark.parametrize(("path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"}],
)  # fmt: skip
def test_admin_refuses_without_the_token(
    bridge_client: tuple[TestClient, Bridge, list[str]],
    path: str,
    body: dict[str, str] | None,
    headers: dict[str, str],
) -> None:
    client, bridge, _ = bridge_client
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in answer.text and isinstance(answer.json()["detail"], str)
    assert not bridge.dispatch_paused.is_set()


@pytest.mark.parametrize(("path", "body"), ADMIN_CALLS)
def test_admin_is_disabled_without_a_configured_token(
    tmp_path: Path,
    db: Engine,
    fake_ce: tuple[str, list[str]],
    path: str,
    body: dict[str, str] | None,
) -> None:
    settings = make_settings(tmp_path, admin_token=None)
    bridge = make_bridge(settings, db, fake_ce[0])
    with TestClient(create_app(settings, bridge)) as client:
        for headers in ({}, ADMIN, {"Authorization": "Bearer "}):
            answer = client.post(path, json=body, headers=headers)
            assert answer.status_code == 401
            assert "BRIDGE_ADMIN_TOKEN is not set" in answer.json()["detail"]


def test_pause_and_resume_dispatch(bridge_client: tuple[TestClient, Bridge, list[str]]) -> None:
    client, bridge, _ = bridge_client
    assert client.post("/admin/pause", headers=ADMIN).json() == {"dispatch_paused": True}
    assert bridge.dispatch_paused.is_set()
    assert client.post("/admin/pause", headers=ADMIN).json() == {"dispatch_paused": True}
    assert client.post("/admin/resume", headers=ADMIN).json() == {"dispatch_paused": False}
    assert not bridge.dispatch_paused.is_set()


def test_retry_resets_an_open_job_and_refuses_a_closed_one(
    bridge_client: tuple[TestClient, Bridge, list[str]], db: Engine
) -> None:
    client, _, _ = bridge_client
    with Session(db) as s:
        s.add(stored_job(5, state=JobState.NEW, attempts=4, next_attempt_at=1e12))
        s.add(stored_job(6, state=JobState.SETTLED))
        s.commit()
    answer = client.post("/admin/jobs/5/retry", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.json()["state"] == "new"
    with Session(db) as s:
        job = s.get(type(stored_job(0)), 5)
        assert job is not None and (job.attempts, job.next_attempt_at) == (0, 0.0)
    conflict = client.post("/admin/jobs/6/retry", headers=ADMIN)
    assert conflict.status_code == 409 and "settled" in conflict.json()["detail"]
    assert client.post("/admin/jobs/7/retry", headers=ADMIN).status_code == 404


def test_fail_queues_a_refund_through_the_machine(
    bridge_client: tuple[TestClient, Bridge, list[str]], db: Engine
) -> None:
    client, _, ce_calls = bridge_client
    with Session(db) as s:
        s.add(stored_job(8, state=JobState.RUNNING, remote_job_id="ce-8"))
        s.add(stored_job(9, state=JobState.SETTLED))
        s.commit()
    answer = client.post("/admin/jobs/8/fail", json={"reason": "stuck for days"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "settling"
    with Session(db) as s:
        (update,) = s.exec(select(Update).where(Update.job_id == 8)).all()
        assert (update.status, update.data) == (
            int(Status.FAILED),
            "failed by the operator: stuck for days",
        )
    assert ce_calls == ["job-cancel"]  # the remote job is cancelled too
    again = client.post("/admin/jobs/8/fail", json={"reason": "again"}, headers=ADMIN)
    assert again.status_code == 409 and "already queued" in again.json()["detail"]
    assert client.post("/admin/jobs/9/fail", json={"reason": "x"}, headers=ADMIN).status_code == 409
    assert (
        client.post("/admin/jobs/10/fail", json={"reason": "x"}, headers=ADMIN).status_code == 404
    )
    for bad in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "a\nb"}, {"reason": "x" * 201}):
        assert client.post("/admin/jobs/8/fail", json=bad, headers=ADMIN).status_code == 422, bad


def test_admin_without_a_bridge_is_503(client: TestClient) -> None:
    answer = client.post("/admin/pause", headers=ADMIN)
    assert answer.status_code == 503
    assert answer.json() == {"detail": "no bridge runs in this process: admin actions need one"}


# ---------------------------------------------------------------------------- readiness


def test_readiness_checks_lag_and_ce(
    settings: Settings, db: Engine, fake_ce: tuple[str, list[str]]
) -> None:
    bridge = make_bridge(settings, db, fake_ce[0], head=100)
    with TestClient(create_app(settings, bridge)) as client:
        first = {c["name"]: c for c in client.get("/readyz").json()["checks"]}
        assert first["rpc"]["ok"] and "head block 100" in first["rpc"]["message"]
        assert not first["scan_lag"]["ok"]  # no scan yet
        assert first["ce"]["ok"], first["ce"]  # a CE-style 404 answer means CE is there
        with Session(db) as s:
            s.add(ScanCursor(contract=bridge.contract, block=97))
            s.commit()
        answer = client.get("/readyz")
        assert answer.status_code == 200, answer.text
        assert answer.json()["ready"] is True
        with Session(db) as s:
            cursor = s.get(ScanCursor, bridge.contract)
            assert cursor is not None
            cursor.block = 40  # 100 - 2 - 40 = 58 > 50
            s.add(cursor)
            s.commit()
        lagging = client.get("/readyz")
        assert lagging.status_code == 503
        lag = next(c for c in lagging.json()["checks"] if c["name"] == "scan_lag")
        assert lag["ok"] is False and "58 blocks behind" in lag["message"]


def test_readiness_names_a_dead_ce_and_a_dead_node(settings: Settings, db: Engine) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/remotejobs/v2/"  # refuses connections
    bridge = make_bridge(settings, db, nowhere, head=None)
    with TestClient(create_app(settings, bridge)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = {c["name"]: c for c in answer.json()["checks"]}
    assert not checks["ce"]["ok"] and "CE API unreachable" in checks["ce"]["message"]
    assert not checks["rpc"]["ok"] and "node unreachable" in checks["rpc"]["message"]
    assert checks["database"]["ok"]
    assert AUTHENTICATOR not in answer.text


# ---------------------------------------------------------------------------- metrics


def test_metrics_come_from_the_database_in_a_registry_per_app(
    settings: Settings, db: Engine
) -> None:
    seed(db)
    apps = [TestClient(create_app(settings, db=db)) for _ in range(2)]
    for client in apps:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        assert 'ce_bridge_jobs{state="settled"} 2.0' in text
        assert 'ce_bridge_jobs{state="new"} 1.0' in text
        assert "ce_bridge_transactions_replaced_total 1.0" in text
        assert "ce_bridge_gas_used_total 90000.0" in text
        assert "ce_bridge_updates_waiting 1.0" in text
        for name in ("ce_bridge_ce_call_seconds", "ce_bridge_ce_errors_total"):
            assert f"# TYPE {name}" in text


def test_ce_calls_are_timed_and_errors_counted(
    settings: Settings, db: Engine, fake_ce: tuple[str, list[str]]
) -> None:
    bridge = make_bridge(settings, db, fake_ce[0])
    app = create_app(settings, bridge)
    with TestClient(app) as client:
        bridge.ce.ping()  # a CE-style 404: reachable
        with pytest.raises(Exception):  # noqa: B017 - any CE error; its kind is what matters
            bridge.ce.job_status("nope")
        answer = client.get("/metrics")
    assert answer.status_code == 200
    text = answer.text
    assert 'ce_bridge_ce_call_seconds_count{op="ping"} 1.0' in text
    assert 'ce_bridge_ce_errors_total{kind="rejected",op="job-status"} 1.0' in text
    assert "ce_bridge_chain_head_block 100.0" in text
    assert "ce_bridge_scan_cursor_block" not in text  # no scan yet: left out, not zero
    assert "ce_bridge_operator_balance_wei 3e+18" in text
    assert "ce_bridge_callback_failures_total 0.0" in text
    assert "ce_bridge_dispatch_paused 0.0" in text


# ---------------------------------------------------------------------------- schema


def test_openapi_documents_every_answer_and_no_secret(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    text = json.dumps(schema)
    for secret in (AUTHENTICATOR, OPERATOR_KEY, TOKEN):
        assert secret not in text
    for name, component in schema["components"]["schemas"].items():
        for field in component.get("properties", {}):
            assert not {"authenticator", "key", "token", "secret"} & set(field.split("_")), (
                name,
                field,
            )
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "200" in responses, (method, path)
            assert responses["200"].get("content"), (method, path)
            if "{job_id}" in path:
                assert "404" in responses, (method, path)
            if path.startswith("/admin"):
                assert {"401", "503"} <= set(responses), (method, path)
                assert operation["security"] == [{"AdminToken": []}]
            assert operation.get("description"), (method, path)

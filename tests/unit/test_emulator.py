"""The CE emulator in-process (Starlette TestClient) with a hand-driven clock.

Every test of the API runs against both apps: the FastAPI one (tests, demo) and the bare ASGI one
of the benchmarks (``create_lean_emulator_app``, outputs in memory), which must answer alike;
the fault-injection tests run against the FastAPI app only (the lean one has no faults).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bridge.http_thread import ThreadedServer
from bridge.remote.emulator import (
    MAX_SLOW_OUTPUTS,
    EmulatorConfig,
    LeanEmulatorApp,
    create_emulator_app,
    create_lean_emulator_app,
    generated_chunks,
    generated_sha256,
    parse_directives,
)
from tests.builders import Clock

AUTH = "emulator-unit-secret-6f1d"
BASE = "/remotejobs/v2/"
BODY: dict[str, Any] = {
    "authenticator": AUTH,
    "app": "charityengine:wolframengine",
    "commandLine": "math 2+2 > output/out.txt",
    "specs": {"vcpus": 2, "ram": 512, "disk": 512, "networkDownload": 0, "networkUpload": 0},
    "hours": 1,
    "inputFiles": [{"filename": "in.txt", "url": "http://work.charityengine.com/m.m"}],
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _clients(tmp_path: Path, clock: Clock, lean: bool) -> Iterator[Any]:
    clients: list[TestClient] = []

    def factory(**settings: Any) -> TestClient:
        settings = {"authenticators": frozenset({AUTH}), "data_dir": tmp_path, **settings}
        config = EmulatorConfig(**settings)
        app = (
            create_lean_emulator_app(config, clock=clock)
            if lean
            else create_emulator_app(config, clock=clock)
        )
        client = TestClient(app)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture(params=["fastapi", "lean"])
def make(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Any]:
    """A factory of clients of the emulator, once for each app."""
    yield from _clients(tmp_path, clock, lean=request.param == "lean")


@pytest.fixture
def make_full(tmp_path: Path, clock: Clock) -> Iterator[Any]:
    """A factory of clients of the FastAPI app (the one with fault injection)."""
    yield from _clients(tmp_path, clock, lean=False)


def create(client: TestClient, body: dict[str, Any] | None = None, key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post(BASE + "job-create", json=body or BODY, headers=headers)
    assert response.status_code == 200, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def status(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.post(BASE + "job-status", json={"authenticator": AUTH, "jobId": job_id})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_states_advance_with_time_and_outputs_appear_when_completed(
    make: Any, clock: Clock, tmp_path: Path
) -> None:
    client = make()
    job_id = create(client)
    timeline = [
        (0.0, "Provisioning"),
        (0.49, "Provisioning"),
        (0.5, "Downloading"),
        (1.0, "Running"),
        (1.99, "Running"),
        (2.0, "Completed"),
    ]
    start = clock.now
    for offset, expected in timeline:
        clock.now = start + offset
        answer = status(client, job_id)
        assert answer["status"] == expected
        if expected != "Completed":
            assert answer["outputFiles"] == [] and answer["error"] is None
    assert [f["filename"] for f in answer["outputFiles"]] == ["meta/spec.json", "out.txt"]
    in_memory = isinstance(client.app, LeanEmulatorApp)
    for item in answer["outputFiles"]:
        assert item["url"] == f"http://testserver{BASE}files/{job_id}/{item['filename']}"
        served = client.get(item["url"])
        assert served.status_code == 200
        stored = tmp_path / job_id / "output" / item["filename"]
        assert not stored.exists() if in_memory else served.content == stored.read_bytes()
    out = client.get(f"{BASE}files/{job_id}/out.txt").content
    seed = f"{BODY['app']}\n{BODY['commandLine']}\n{job_id}".encode()
    assert out == (hashlib.sha256(seed).hexdigest() + "\n").encode()
    spec = json.loads(client.get(f"{BASE}files/{job_id}/meta/spec.json").content)
    assert spec == {k: v for k, v in BODY.items() if k != "authenticator"}


def test_zero_durations_complete_at_once(make: Any) -> None:
    client = make(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)
    assert status(client, create(client))["status"] == "Completed"


def test_fail_and_never_finish_and_cancel(make: Any, clock: Clock) -> None:
    client = make(fail_commands=frozenset({"exit 1"}), never_finish_apps=frozenset({"forever"}))
    failing = create(client, {**BODY, "commandLine": "run; exit 1"})
    forever = create(client, {**BODY, "app": "docker:forever"})
    done = create(client)
    clock.now += 3600
    failed = status(client, failing)
    assert failed["status"] == "Failed" and failed["error"] and failed["outputFiles"] == []
    assert status(client, forever)["status"] == "Running"
    cancel = client.post(BASE + "job-cancel", json={"authenticator": AUTH, "jobId": forever})
    assert cancel.json() == {"jobId": forever, "status": "Aborted"}
    aborted = status(client, forever)
    assert aborted["status"] == "Aborted" and aborted["error"]
    again = client.post(BASE + "job-cancel", json={"authenticator": AUTH, "jobId": done})
    assert again.json() == {"jobId": done, "status": "Completed"}
    assert client.get(f"{BASE}files/{failing}/out.txt").status_code == 404


def test_outputs_are_only_served_for_completed_jobs_and_safe_paths(make: Any, clock: Clock) -> None:
    client = make()
    job_id = create(client)
    assert client.get(f"{BASE}files/{job_id}/out.txt").status_code == 404
    clock.now += 10
    for path in ("nope.txt", "../../etc/passwd", "meta//spec.json", "meta\\spec.json"):
        response = client.get(f"{BASE}files/{job_id}/{path}")
        assert response.status_code == 404, path
    assert client.get(f"{BASE}files/unknown/out.txt").status_code == 404


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"app": ""}, "app"),
        ({"app": None}, "app"),
        ({"commandLine": 5}, "commandLine"),
        ({"specs": None}, "specs"),
        ({"specs": {**BODY["specs"], "vcpus": 0}}, "vcpus"),
        ({"specs": {**BODY["specs"], "ram": -1}}, "ram"),
        ({"specs": {**BODY["specs"], "disk": "512"}}, "disk"),
        ({"specs": {"vcpus": 1}}, "ram"),
        ({"hours": 0}, "hours"),
        ({"hours": True}, "hours"),
        ({"hours": "1"}, "hours"),
        ({"inputFiles": {}}, "inputFiles"),
        ({"inputFiles": [{"filename": "a"}]}, "inputFiles[0].url: is required"),
        ({"hours": 0.5}, "hours: expected an integer, got 0.5"),
        ({"specs": {**BODY["specs"], "vcpus": 70000}}, "specs.vcpus: must be an integer between"),
        ({"priority": 1}, "priority: unknown key"),
    ],
)
def test_job_create_validates_like_ce(make: Any, change: dict[str, Any], message: str) -> None:
    response = make().post(BASE + "job-create", json={**BODY, **change})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_missing_input_files_and_copies_are_accepted(make: Any) -> None:
    body = {k: v for k, v in BODY.items() if k != "inputFiles"}
    create(make(), {**body, "copies": 2})


def test_the_authenticator_is_never_echoed_in_a_validation_error(make: Any) -> None:
    response = make(authenticators=frozenset()).post(
        BASE + "job-create", json={**BODY, "authenticator": ["s3cret-list"], "hours": "x"}
    )
    assert response.status_code in (400, 401)
    assert "s3cret" not in response.text


def test_bad_json_and_authentication(make: Any) -> None:
    client = make()
    assert client.post(BASE + "job-create", content=b"{nope").status_code == 400
    assert client.post(BASE + "job-create", json=[1]).status_code == 400
    missing = client.post(BASE + "job-create", json={**BODY, "authenticator": ""})
    unknown = client.post(BASE + "job-create", json={**BODY, "authenticator": "other"})
    assert missing.status_code == unknown.status_code == 401
    assert "other" not in unknown.text
    any_auth = make(authenticators=frozenset())
    create(any_auth, {**BODY, "authenticator": "anyone"})


def test_jobs_belong_to_their_authenticator(make: Any) -> None:
    client = make(authenticators=frozenset())
    job_id = create(client)
    response = client.post(BASE + "job-status", json={"authenticator": "someone", "jobId": job_id})
    assert response.status_code == 404 and response.json() == {"error": "unknown job"}
    assert client.post(BASE + "job-status", json={"authenticator": AUTH}).status_code == 400


def test_reject_apps_answers_400_with_a_message(make: Any) -> None:
    client = make(reject_apps=frozenset({"forbidden"}))
    response = client.post(BASE + "job-create", json={**BODY, "app": "docker:forbidden"})
    assert response.status_code == 400
    assert response.json() == {"error": "app 'docker:forbidden' is not available"}


def test_error_apps_answer_503_and_create_nothing(make: Any) -> None:
    client = make(error_apps=frozenset({"outage"}))
    for _ in range(3):
        response = client.post(
            BASE + "job-create",
            json={**BODY, "app": "docker:outage"},
            headers={"Idempotency-Key": "1:0xA:9"},
        )
        assert response.status_code == 503
        assert response.json() == {"error": "app 'docker:outage' is unavailable (emulated outage)"}
    stats = client.get("/_emulator/stats").json()
    assert stats["jobs"] == 0 and stats["by_key"]["1:0xA:9"] == {
        "calls": 3,
        "jobs": 0,
        "remoteJobIds": [],
    }


def test_idempotency_key_and_stats(make: Any) -> None:
    client = make()
    first = create(client, key="1:0xA:1")
    assert create(client, key="1:0xA:1") == first
    second = create(client, key="1:0xA:2")
    create(client)
    conflict = client.post(
        BASE + "job-create", json={**BODY, "hours": 2}, headers={"Idempotency-Key": "1:0xA:1"}
    )
    assert conflict.status_code == 422
    assert client.get("/_emulator/stats").json() == {
        "create_calls": 5,
        "jobs": 3,
        "by_key": {
            "1:0xA:1": {"calls": 3, "jobs": 1, "remoteJobIds": [first]},
            "1:0xA:2": {"calls": 1, "jobs": 1, "remoteJobIds": [second]},
        },
        "max_in_flight": 1,  # one request at a time
    }


def test_a_key_first_used_by_an_invalid_request_still_dedupes(make: Any) -> None:
    client = make()
    invalid = client.post(
        BASE + "job-create", json={**BODY, "hours": 0}, headers={"Idempotency-Key": "k"}
    )
    assert invalid.status_code == 400
    first = create(client, key="k")
    assert create(client, key="k") == first
    assert client.get("/_emulator/stats").json()["by_key"]["k"] == {
        "calls": 3,
        "jobs": 1,
        "remoteJobIds": [first],
    }


def test_a_server_ignoring_idempotency_keys_shows_in_the_stats(make: Any) -> None:
    client = make(honour_idempotency_key=False)
    one, two = create(client, key="k"), create(client, key="k")
    assert one != two
    assert client.get("/_emulator/stats").json()["by_key"]["k"] == {
        "calls": 2,
        "jobs": 2,
        "remoteJobIds": [one, two],
    }


def test_faults_are_injected_on_the_api_only(make_full: Any) -> None:
    make = make_full
    client = make(error_rate=1.0, seed=1)
    codes = {client.post(BASE + "job-create", json=BODY).status_code for _ in range(20)}
    assert codes == {500, 503}
    assert client.get("/_emulator/stats").json()["create_calls"] == 0
    limited = make(rate_limit_rate=1.0, retry_after=0.1)
    response = limited.post(BASE + "job-status", json={"authenticator": AUTH, "jobId": "x"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "0.1"
    assert limited.get("/_emulator/stats").status_code == 200


def test_malformed_answers_are_processed_but_unparsable(make_full: Any) -> None:
    client = make_full(
        malformed_rate=1.0, provisioning_seconds=0, downloading_seconds=0, running_seconds=0
    )
    response = client.post(BASE + "job-create", json=BODY, headers={"Idempotency-Key": "k"})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    stats = client.get("/_emulator/stats").json()
    assert stats["jobs"] == 1
    (job_id,) = stats["by_key"]["k"]["remoteJobIds"]
    file = client.get(f"{BASE}files/{job_id}/out.txt")  # downloads are never corrupted
    assert file.status_code == 200 and len(file.content) == 65


def test_runtime_config_changes_and_their_limits(make: Any) -> None:
    client = make()
    changed = client.post("/_emulator/config", json={"error_rate": 0.5, "fail_apps": ["x"]})
    assert changed.status_code == 200
    assert changed.json()["error_rate"] == 0.5 and changed.json()["fail_apps"] == ["x"]
    assert "authenticators" not in changed.json()
    for bad in (
        {"error_rate": 2},
        {"error_rate": 0.6, "rate_limit_rate": 0.6},
        {"no_such_setting": 1},
        {"authenticators": ["x"]},
        {"data_dir": "/tmp"},
    ):
        response = client.post("/_emulator/config", json=bad)
        assert response.status_code == 400, bad
        assert "error" in response.json()
    assert client.get("/_emulator/config").json()["error_rate"] == 0.5


def test_inspection_never_shows_the_authenticator(make: Any, clock: Clock) -> None:
    client = make()
    job_id = create(client, key="1:0xA:9")
    clock.now += 10
    status(client, job_id)
    texts = [
        client.get(f"/_emulator/jobs/{job_id}").text,
        client.get("/_emulator/stats").text,
        client.get("/_emulator/config").text,
        client.get(f"{BASE}files/{job_id}/meta/spec.json").text,
    ]
    assert all(AUTH not in text for text in texts)
    assert json.loads(texts[0])["request"]["app"] == BODY["app"]
    assert client.get("/_emulator/jobs/nope").status_code == 404
    config = EmulatorConfig(authenticators=frozenset({AUTH}))
    assert AUTH not in repr(config) and AUTH not in str(config)


def test_the_lean_app_for_the_benchmarks_injects_no_fault(tmp_path: Path, clock: Clock) -> None:
    config = EmulatorConfig(authenticators=frozenset({AUTH}), data_dir=tmp_path, error_rate=1.0)
    with TestClient(create_emulator_app(config, clock=clock, inject_faults=False)) as lean:
        job_id = create(lean)  # every request would fail with the middleware
        assert status(lean, job_id)["jobId"] == job_id
    with TestClient(create_lean_emulator_app(config, clock=clock)) as bare:
        job_id = create(bare)
        assert status(bare, job_id)["jobId"] == job_id
    with TestClient(create_emulator_app(config, clock=clock)) as full:
        assert full.post(BASE + "job-create", json=BODY).status_code in (500, 503)


def test_the_bare_app_answers_an_unknown_route_with_an_error_body(tmp_path: Path) -> None:
    with TestClient(create_lean_emulator_app(EmulatorConfig(data_dir=tmp_path))) as client:
        for response in (
            client.get(BASE + "job-create"),
            client.post(BASE + "nope", json={}),
            client.put(BASE + "job-status", json={}),
            client.get(f"{BASE}files/only-an-id"),
            client.get("/_emulator/jobs/a/b"),
        ):
            assert response.status_code == 404
            assert response.json() == {"error": "no such endpoint"}


# ---------------------------------------------------------------------------- directives


def test_generated_outputs_are_listed_and_streamed_without_being_stored(
    make: Any, clock: Clock, tmp_path: Path
) -> None:
    client = make(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)
    job_id = create(client, {**BODY, "commandLine": "ce-emulator:outputs=2x3000000"})
    files = {f["filename"]: f["url"] for f in status(client, job_id)["outputFiles"]}
    assert {"big/000000.bin", "big/000001.bin"} <= set(files)
    response = client.get(files["big/000001.bin"])
    assert response.status_code == 200 and len(response.content) == 3_000_000
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == generated_sha256(job_id, "big/000001.bin", 3_000_000)
    assert not list(tmp_path.rglob("*.bin")), "generated files are never written to disk"


def test_a_fail_message_directive_fails_the_job_with_that_many_bytes(make: Any) -> None:
    client = make(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)
    job_id = create(client, {**BODY, "commandLine": "ce-emulator:fail-message=5000"})
    answer = status(client, job_id)
    assert answer["status"] == "Failed" and len(answer["error"]) == 5000


def test_unavailable_outputs_answer_503(make: Any) -> None:
    client = make(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)
    job_id = create(client, {**BODY, "commandLine": "ce-emulator:outputs-unavailable"})
    (first, *_) = status(client, job_id)["outputFiles"]
    assert client.get(first["url"]).status_code == 503


def test_slow_outputs_answer_the_same_bytes(make: Any) -> None:
    # Spread over a second each (``_paced``), the answers still hold exactly the files' bytes:
    # a small one (fewer bytes than pieces) and a generated one of 3,000.
    client = make(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)
    command = "echo x > output/out.txt # ce-emulator:slow-outputs=1 ce-emulator:outputs=1x3000"
    job_id = create(client, {**BODY, "commandLine": command})
    app = client.app
    emulator = app.emulator if isinstance(app, LeanEmulatorApp) else app.state.emulator
    files = status(client, job_id)["outputFiles"]
    assert len(files) == 3
    for entry in files:
        answer = emulator.output_file(job_id, entry["filename"])
        assert answer.seconds == 1.0
        content = answer.content
        if isinstance(content, bytes):
            expected = content
        else:
            expected = b"".join(generated_chunks(content.seed, content.size))
        assert client.get(entry["url"]).content == expected


def test_slow_outputs_directive_is_bounded() -> None:
    assert parse_directives("run # ce-emulator:slow-outputs=7").slow_outputs == 7
    assert parse_directives("ce-emulator:slow-outputs=99999999").slow_outputs == MAX_SLOW_OUTPUTS
    assert parse_directives("ce-emulator:slow-outputs=1x2").slow_outputs == 0


@pytest.mark.parametrize(
    ("command", "files"),
    [("ce-emulator:outputs=1x", 0), ("ce-emulator:outputs=100001x1", 0), ("no directive", 0)],
)
def test_malformed_or_oversized_directives_are_ignored(command: str, files: int) -> None:
    assert len(parse_directives(command).generated) == files


@pytest.mark.parametrize("lean", [False, True], ids=["fastapi", "lean"])
def test_answer_delay_holds_requests_side_by_side_not_in_turn(tmp_path: Path, lean: bool) -> None:
    # Served over real HTTP: five calls sent at once are all held back together (a far
    # server's latency), so five are in flight at the peak; a queue would show one. The five
    # clients are made before a barrier, and each answer is held 2 s, so a loaded machine's
    # slow thread still sends its call while the others are held.
    config = EmulatorConfig(authenticators=frozenset({AUTH}), data_dir=tmp_path, answer_delay=2.0)
    app = create_lean_emulator_app(config) if lean else create_emulator_app(config)
    with ThreadedServer(
        app, "127.0.0.1", 0, probe_path="/_emulator/stats", name="emulator-test", lifespan="off"
    ) as server:
        body = {"authenticator": AUTH, "jobId": "no-such-job"}

        ready = threading.Barrier(5)

        def call(_: int) -> int:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                ready.wait(timeout=30)
                return http.post(BASE + "job-status", json=body).status_code

        with ThreadPoolExecutor(5) as pool:
            assert list(pool.map(call, range(5))) == [404] * 5
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/_emulator/stats").json()["max_in_flight"] == 5

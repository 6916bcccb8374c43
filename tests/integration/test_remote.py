"""CEClient against the real CE emulator over real HTTP (EmulatorServer on 127.0.0.1)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any, TypeVar

import httpx
import pytest

from bridge.errors import (
    BridgeError,
    DownloadRefused,
    RemoteAuthError,
    RemoteRejected,
    RemoteTransient,
)
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, CEStatus, RemoteJobStatus, idempotency_key
from bridge.remote.emulator import EmulatorConfig
from bridge.remote.server import EmulatorServer
from bridge.results import hash_directory, result_hash
from bridge.retry import Backoff
from bridge.waiting import wait_until
from tests.builders import Clock

T = TypeVar("T")

AUTH = "c503d86bc4e82d9415cb5912a0986c80"
WRONG_AUTH = "ffffeeee0000111122223333deadbeef"
CONTRACT = "0x52908400098527886e0f7030069857d2e4169ee7"
FAST = {"provisioning_seconds": 0.02, "downloading_seconds": 0.02, "running_seconds": 0.05}
NO_FAULTS: dict[str, Any] = {
    "error_rate": 0.0,
    "rate_limit_rate": 0.0,
    "timeout_rate": 0.0,
    "malformed_rate": 0.0,
    "retry_after": 0.05,
    "timeout_seconds": 0.3,
    **FAST,
}
_job_ids = itertools.count(1)


def request(app: str = "charityengine:wolframengine", command: str = "math 2+2") -> CEJobRequest:
    return CEJobRequest(
        app=app,
        command_line=f"{command} > output/out.txt",
        vcpus=2,
        ram=512,
        disk=512,
        network_download=0,
        network_upload=0,
        hours=1,
        input_files=(("in.txt", "http://work.charityengine.com/rytis/mathtest.m"),),
    )


def new_key() -> str:
    return idempotency_key(31337, CONTRACT, next(_job_ids))


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something other than None (or fail at the deadline)."""
    found: list[T] = []

    def probed() -> bool:
        value = probe()
        if value is not None:
            found.append(value)
        return value is not None

    wait_until(probed, timeout, 0.005, "the probe", error=AssertionError)
    return found[-1]


class Recorder:
    """A ``sleep`` that records delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        authenticators=frozenset({AUTH}),
        fail_apps=frozenset({"failing"}),
        reject_apps=frozenset({"forbidden"}),
        never_finish_apps=frozenset({"forever"}),
        seed=20240601,
        **NO_FAULTS,
    )
    with EmulatorServer(config) as running:
        yield running


@pytest.fixture
def emulator(server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The shared server, with fault settings restored after each test."""
    yield server
    configure(server, **NO_FAULTS)


@pytest.fixture
def make_client(emulator: EmulatorServer) -> Iterator[Callable[..., CEClient]]:
    clients: list[CEClient] = []

    def factory(**kwargs: Any) -> CEClient:
        options: dict[str, Any] = {"backoff": Backoff(initial=0.001, cap=1.0, jitter=1.0), **kwargs}
        client = CEClient(options.pop("base_url", emulator.base_url), AUTH, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def configure(server: EmulatorServer, **settings: Any) -> None:
    response = httpx.post(server.url + "_emulator/config", json=settings)
    assert response.status_code == 200, response.text


def stats(server: EmulatorServer) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(server.url + "_emulator/stats").json()
    return answer


def wait_terminal(client: CEClient, job_id: str) -> RemoteJobStatus:
    def probe() -> RemoteJobStatus | None:
        status = client.job_status(job_id)
        return status if status.is_terminal else None

    return wait_for(probe)


def download_all(client: CEClient, status: RemoteJobStatus) -> dict[str, bytes]:
    return {f.filename: client.download(f.url) for f in status.output_files}


def test_job_runs_through_every_state_and_its_outputs_hash_like_the_source() -> None:
    clock = Clock()
    phases = {"provisioning_seconds": 10.0, "downloading_seconds": 10.0, "running_seconds": 10.0}
    config = EmulatorConfig(authenticators=frozenset({AUTH}), **{**NO_FAULTS, **phases})
    with (
        EmulatorServer(config, clock=clock) as server,
        closing(CEClient(server.base_url, AUTH)) as client,
    ):
        job_id = client.create_job(request(), new_key())
        seen: list[RemoteJobStatus] = []
        for _ in range(4):
            seen.append(client.job_status(job_id))
            clock.now += 10.0
        assert [status.status for status in seen] == [
            CEStatus.PROVISIONING,
            CEStatus.DOWNLOADING,
            CEStatus.RUNNING,
            CEStatus.COMPLETED,
        ]
        assert not any(status.output_files for status in seen[:3])
        final = seen[-1]
        assert final.is_success and final.error is None
        files = download_all(client, final)
        assert sorted(files) == ["meta/spec.json", "out.txt"]
        source = server.emulator.data_dir / job_id / "output"
        assert result_hash(files) == hash_directory(source)


def test_idempotency_key_gives_one_remote_job(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    client = make_client()
    key = new_key()
    before = stats(emulator)
    first = client.create_job(request(), key)
    assert client.create_job(request(), key) == first
    after = stats(emulator)
    assert after["by_key"][key] == {"calls": 2, "jobs": 1, "remoteJobIds": [first]}
    assert after["create_calls"] - before["create_calls"] == 2
    assert after["jobs"] - before["jobs"] == 1
    with pytest.raises(RemoteRejected) as conflict:
        client.create_job(request(command="something else"), key)
    assert conflict.value.status_code == 422


def test_rejection_carries_ces_message(make_client: Callable[..., CEClient]) -> None:
    sleep = Recorder()
    with pytest.raises(RemoteRejected) as info:
        make_client(sleep=sleep).create_job(request(app="docker:forbidden"), new_key())
    assert info.value.status_code == 400
    assert str(info.value) == "app 'docker:forbidden' is not available"
    assert sleep.delays == []
    with pytest.raises(RemoteRejected) as unknown:
        make_client().job_status("no-such-job")
    assert unknown.value.status_code == 404 and str(unknown.value) == "unknown job"


def test_unknown_authenticator_is_an_auth_error(emulator: EmulatorServer) -> None:
    with CEClient(emulator.base_url, WRONG_AUTH) as client:
        with pytest.raises(RemoteAuthError) as info:
            client.create_job(request(), new_key())
        assert info.value.status_code == 401
        assert WRONG_AUTH not in str(info.value) and WRONG_AUTH not in repr(info.value)
        with pytest.raises(RemoteAuthError):
            client.ping()


def test_client_converges_through_errors_rate_limits_and_malformed_bodies(
    emulator: EmulatorServer,
    make_client: Callable[..., CEClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.remote.client")
    configure(emulator, error_rate=0.25, rate_limit_rate=0.25, malformed_rate=0.2)
    sleep = Recorder()
    client = make_client(max_attempts=60, sleep=sleep)
    key = new_key()
    job_id = client.create_job(request(command="faulty"), key)
    final = wait_terminal(client, job_id)
    assert final.is_success
    files = download_all(client, final)
    assert result_hash(files) == hash_directory(emulator.emulator.data_dir / job_id / "output")
    configure(emulator, error_rate=0, rate_limit_rate=0, malformed_rate=0)
    assert stats(emulator)["by_key"][key]["jobs"] == 1

    # Each retry is logged with the failure and the delay slept; every 429 waited Retry-After.
    retries = [r for r in caplog.records if r.getMessage().find("; retrying in ") > 0]
    assert len(retries) == len(sleep.delays) > 0
    failures = [(r.args[3], r.args[4]) for r in retries if isinstance(r.args, tuple)]
    rate_limited = [delay for exc, delay in failures if "HTTP 429" in str(exc)]
    assert rate_limited, "with these rates some requests must have been rate limited"
    assert all(isinstance(d, float) and d >= 0.05 for d in rate_limited)


def test_retry_after_is_honoured_until_the_budget_runs_out(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    configure(emulator, rate_limit_rate=1.0, retry_after=0.05)
    sleep = Recorder()
    with pytest.raises(RemoteTransient, match="gave up after 4 attempts") as info:
        make_client(max_attempts=4, sleep=sleep).job_status("anything")
    assert info.value.retry_after == pytest.approx(0.05)
    assert len(sleep.delays) == 3
    assert all(delay >= 0.05 for delay in sleep.delays)


def test_server_errors_exhaust_the_budget(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    configure(emulator, error_rate=1.0)
    sleep = Recorder()
    with pytest.raises(RemoteTransient, match="gave up after 3 attempts"):
        make_client(max_attempts=3, sleep=sleep).create_job(request(), new_key())
    assert len(sleep.delays) == 2
    with pytest.raises(RemoteTransient):
        make_client().ping()


def test_timeouts_are_retried_and_still_create_one_job(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    configure(emulator, timeout_rate=0.5, timeout_seconds=0.3)
    client = make_client(timeout=0.1, max_attempts=40)
    key = new_key()
    job_id = client.create_job(request(command="slow"), key)
    assert wait_terminal(client, job_id).is_success
    configure(emulator, timeout_rate=0)
    record = wait_for(lambda: stats(emulator)["by_key"].get(key))
    assert record["jobs"] == 1 and record["remoteJobIds"] == [job_id]


def test_a_create_the_client_gave_up_on_is_still_processed(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    # A slow server: the answer never reaches the client, but the job is created after the hang.
    configure(emulator, timeout_rate=1.0, timeout_seconds=0.3)
    key = new_key()
    with pytest.raises(RemoteTransient):
        make_client(timeout=0.05, max_attempts=1).create_job(request(command="late"), key)
    record = wait_for(lambda: stats(emulator)["by_key"].get(key, {}).get("remoteJobIds") or None)
    assert len(record) == 1
    # The retry with the same key finds that job...
    configure(emulator, timeout_rate=0)
    assert make_client().create_job(request(command="late"), key) == record[0]
    # ...unless the server ignores the key: then the retry is a second job (README, Guarantees).
    configure(emulator, timeout_rate=1.0, honour_idempotency_key=False)
    try:
        other = new_key()
        with pytest.raises(RemoteTransient):
            make_client(timeout=0.05, max_attempts=1).create_job(request(command="late2"), other)
        wait_for(lambda: stats(emulator)["by_key"].get(other, {}).get("remoteJobIds") or None)
        configure(emulator, timeout_rate=0)
        make_client().create_job(request(command="late2"), other)
        assert stats(emulator)["by_key"][other]["jobs"] == 2
    finally:
        configure(emulator, honour_idempotency_key=True)


def test_download_refuses_foreign_origins_and_oversize_files(
    emulator: EmulatorServer, make_client: Callable[..., CEClient]
) -> None:
    client = make_client()
    final = wait_terminal(client, client.create_job(request(), new_key()))
    url = next(f.url for f in final.output_files if f.filename == "out.txt")
    port = httpx.URL(emulator.base_url).port
    assert port is not None
    for foreign in (
        url.replace("127.0.0.1", "localhost"),
        url.replace(f":{port}/", f":{port + 1}/"),
        url.replace("http://", "https://"),
        "http://example.com/remotejobs/v2/files/x/out.txt",
    ):
        with pytest.raises(DownloadRefused):
            client.download(foreign)
    assert len(client.download(url)) == 65
    with pytest.raises(DownloadRefused, match="cap"):
        make_client(max_download_bytes=64).download(url)


def test_cancel(emulator: EmulatorServer, make_client: Callable[..., CEClient]) -> None:
    client = make_client()
    job_id = client.create_job(request(app="docker:forever"), new_key())
    wait_for(lambda: True if client.job_status(job_id).status == CEStatus.RUNNING else None)
    assert client.cancel_job(job_id) == CEStatus.ABORTED
    aborted = client.job_status(job_id)
    assert aborted.status == CEStatus.ABORTED and aborted.error and not aborted.output_files
    done = client.create_job(request(), new_key())
    wait_terminal(client, done)
    assert client.cancel_job(done) == CEStatus.COMPLETED


def test_failing_app_ends_failed_with_an_error(make_client: Callable[..., CEClient]) -> None:
    client = make_client()
    final = wait_terminal(client, client.create_job(request(app="docker:failing"), new_key()))
    assert final.status == CEStatus.FAILED and not final.is_success
    assert final.error and final.output_files == ()


def test_ping(emulator: EmulatorServer, make_client: Callable[..., CEClient]) -> None:
    make_client().ping()
    with pytest.raises(RemoteRejected):
        make_client(base_url=emulator.url + "not-the-api/").ping()
    with EmulatorServer() as gone:
        closed = gone.base_url
    with pytest.raises(RemoteTransient):
        make_client(base_url=closed).ping()


def test_the_authenticator_never_leaks(
    emulator: EmulatorServer,
    make_client: Callable[..., CEClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    def attempt(action: Callable[[], object]) -> None:
        try:
            action()
        except BridgeError as exc:
            errors.append(exc)

    client = make_client(max_attempts=3)
    job_id = client.create_job(request(), new_key())
    final = wait_terminal(client, job_id)
    download_all(client, final)
    attempt(lambda: client.create_job(request(app="docker:forbidden"), new_key()))
    attempt(lambda: client.job_status("no-such-job"))
    attempt(lambda: client.download("http://elsewhere.example/x"))
    attempt(lambda: make_client(max_download_bytes=1).download(final.output_files[0].url))
    attempt(lambda: CEClient(emulator.base_url, WRONG_AUTH).create_job(request(), new_key()))
    configure(emulator, error_rate=0.4, rate_limit_rate=0.3, malformed_rate=0.3)
    attempt(lambda: client.job_status(job_id))
    attempt(lambda: client.create_job(request(), new_key()))
    configure(emulator, error_rate=0, rate_limit_rate=0, malformed_rate=0)
    assert len(errors) >= 5

    texts = [caplog.text, repr(client), str(client)]
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            texts += [str(chain), repr(chain)]
            chain = chain.__cause__ or chain.__context__
    texts += [
        httpx.get(emulator.url + "_emulator/stats").text,
        httpx.get(emulator.url + "_emulator/config").text,
        httpx.get(emulator.url + f"_emulator/jobs/{job_id}").text,
    ]
    for secret in (AUTH, WRONG_AUTH):
        assert not [text for text in texts if secret in text]

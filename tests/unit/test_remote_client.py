"""CEClient edge cases against a programmable HTTP server on 127.0.0.1 (tests/httpfake.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bridge.devchain import free_port
from bridge.errors import (
    ConfigError,
    DownloadRefused,
    OutputTooLarge,
    RemoteAuthError,
    RemoteRejected,
    RemoteTransient,
)
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, CEStatus
from bridge.retry import Backoff
from bridge.waiting import wait_until
from tests.httpfake import (
    Answer,
    FakeServer,
    Handler,
    Seen,
    always,
    chunks_of,
    json_answer,
    refuse,
    sequence,
)

SECRET = "0123456789abcdef0123456789abcdef"
REQUEST = CEJobRequest("charityengine:test", "echo hi", 1, 64, 64, 0, 0, 1)
#: Seconds a test client waits for an answer: only the hanging answers wait for it.
TIMEOUT = 0.5

MakeClient = Callable[..., tuple[CEClient, list[float]]]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


@pytest.fixture
def make_client(server: FakeServer) -> Iterator[MakeClient]:
    """``make_client(handler, **options)``: the server answers through ``handler``; the client
    records its backoff delays instead of sleeping."""
    clients: list[CEClient] = []

    def factory(handler: Handler, **kwargs: object) -> tuple[CEClient, list[float]]:
        server.handler = handler
        delays: list[float] = []
        options: dict[str, object] = {
            "backoff": Backoff(initial=0.01, cap=1.0, jitter=1.0),
            "timeout": TIMEOUT,
            "sleep": delays.append,
            **kwargs,
        }
        client = CEClient(server.base_url, SECRET, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client, delays

    yield factory
    for client in clients:
        client.close()


def ok_status(job_id: str = "r1") -> Answer:
    return json_answer(200, {"jobId": job_id, "status": "Running"})


class Sink:
    """A ``DownloadSink`` that keeps what it receives."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.restarts = 0

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def restart(self) -> None:
        self.chunks.clear()
        self.restarts += 1

    @property
    def size(self) -> int:
        return sum(map(len, self.chunks))


def test_requests_carry_the_documented_body_and_idempotency_key(
    server: FakeServer, make_client: MakeClient
) -> None:
    client, _ = make_client(always(json_answer(200, {"jobId": "r1"})))
    assert client.create_job(REQUEST, "1:0xabc:7") == "r1"
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/remotejobs/v2/job-create"
    assert request.headers["idempotency-key"] == "1:0xabc:7"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"
    assert request.json() == REQUEST.to_body(SECRET)


def test_connections_are_kept_alive_across_calls(
    server: FakeServer, make_client: MakeClient
) -> None:
    def handler(seen: Seen) -> Answer:
        if seen.method == "POST":
            return ok_status()
        if seen.path.endswith("chunked"):
            return Answer(chunks=[b"da", b"ta"])
        return Answer(200, b"data")

    client, _ = make_client(handler)
    sink = Sink()
    for _ in range(5):
        client.job_status("r1")
        assert client.download(server.base_url + "files/r1/out.txt") == b"data"
        assert client.download(server.base_url + "files/r1/chunked") == b"data"
        client.download_into(server.base_url + "files/r1/chunked", sink)
    assert len(server.requests) == 20 and server.connections == 1
    # A 4xx answer read to its end keeps the connection too.
    server.handler = always(json_answer(404, {"error": "unknown job"}))
    with pytest.raises(RemoteRejected):
        client.job_status("r1")
    assert server.connections == 1


def test_base_url_gets_a_trailing_slash_and_is_validated() -> None:
    assert CEClient("http://h:1/remotejobs/v2", "a").base_url == "http://h:1/remotejobs/v2/"
    assert CEClient("HTTPS://CE.Example/api/", "a").base_url == "https://ce.example/api/"
    for bad in (
        "ftp://h/x/",
        "not a url",
        "http:///x",
        "http://h/x/?q=1",
        "http://h/x/#f",
        "http://user:pw@h/x/",
    ):
        with pytest.raises(ConfigError):
            CEClient(bad, "a")
    with pytest.raises(ConfigError):
        CEClient("http://h/x/", "")
    with pytest.raises(ConfigError):
        CEClient("http://h/x/", "a", max_attempts=0)


def test_repr_hides_the_authenticator(make_client: MakeClient) -> None:
    client, _ = make_client(refuse)
    assert SECRET not in repr(client) and SECRET not in str(client)
    assert "REDACTED" in repr(client)


def test_backoff_is_full_jitter_under_an_exponential_cap(make_client: MakeClient) -> None:
    client, delays = make_client(
        sequence(*[Answer(503)] * 6, ok_status()),
        max_attempts=7,
        backoff=Backoff(initial=0.1, cap=0.5, jitter=1.0),
    )
    assert client.job_status("r1").status == CEStatus.RUNNING
    caps = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert len(delays) == len(caps)
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps, strict=True))


def test_retry_after_seconds_and_dates_are_honoured(make_client: MakeClient) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, delays = make_client(
        sequence(
            Answer(429, headers={"Retry-After": "0.25"}),
            Answer(503, headers={"Retry-After": "0.5"}),
            Answer(429, headers={"Retry-After": later}),
            ok_status(),
        ),
        backoff=Backoff(initial=0.01, cap=60.0, jitter=1.0),
    )
    client.job_status("r1")
    assert delays[0] >= 0.25 and delays[1] >= 0.5 and 25 < delays[2] <= 30


def test_a_retry_after_beyond_the_backoff_cap_is_returned_not_slept(
    make_client: MakeClient,
) -> None:
    client, delays = make_client(
        sequence(Answer(429, headers={"Retry-After": "120"})),
        backoff=Backoff(initial=0.01, cap=10.0, jitter=1.0),
    )
    with pytest.raises(RemoteTransient) as info:
        client.job_status("r1")
    assert info.value.retry_after == 120.0
    assert delays == []


def test_budget_exhausted_raises_transient(server: FakeServer, make_client: MakeClient) -> None:
    client, delays = make_client(always(Answer(500)), max_attempts=3)
    with pytest.raises(RemoteTransient, match="gave up after 3 attempts"):
        client.job_status("r1")
    assert len(delays) == 2 and len(server.requests) == 3


def test_transport_errors_and_malformed_bodies_are_retried(make_client: MakeClient) -> None:
    client, delays = make_client(
        sequence(
            Answer(drop=True),  # the connection closes without an answer
            Answer(hang=True),  # no answer within the timeout
            Answer(200, b'{"jobId": "r1", "sta'),
            json_answer(200, {"jobId": "other", "status": "Running"}),
            json_answer(200, ["not", "an", "object"]),
            Answer(200, b"\xff\xfe not utf-8"),
            Answer(200, b"{}", length=10),  # the connection closes mid-body
            ok_status(),
        ),
        max_attempts=8,
    )
    assert client.job_status("r1").remote_job_id == "r1"
    assert len(delays) == 7


def test_a_refused_connection_is_transient_and_names_no_secret() -> None:
    delays: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/remotejobs/v2/"  # nothing listens there
    with (
        CEClient(url, SECRET, max_attempts=2, sleep=delays.append) as client,
        pytest.raises(RemoteTransient, match="cannot connect") as info,
    ):
        client.create_job(REQUEST, "k")
    assert len(delays) == 1
    assert SECRET not in str(info.value) and "timed out" not in str(info.value)


def test_a_timeout_says_so(make_client: MakeClient) -> None:
    client, _ = make_client(always(Answer(hang=True)), max_attempts=1)
    with pytest.raises(RemoteTransient, match=f"timed out after {TIMEOUT:g}s"):
        client.job_status("r1")


@pytest.mark.parametrize(
    ("code", "error"),
    [(400, RemoteRejected), (404, RemoteRejected), (422, RemoteRejected), (401, RemoteAuthError)],
)
def test_4xx_is_not_retried_and_keeps_ces_message(
    make_client: MakeClient, code: int, error: type[Exception]
) -> None:
    client, delays = make_client(sequence(json_answer(code, {"error": "bad thing"})))
    with pytest.raises(error) as info:
        client.create_job(REQUEST, "k")
    assert str(info.value) == "bad thing"
    assert isinstance(info.value, RemoteRejected) and info.value.status_code == code
    assert delays == []


def test_a_redirect_is_not_followed(server: FakeServer, make_client: MakeClient) -> None:
    elsewhere = server.base_url + "job-status-elsewhere"
    client, _ = make_client(sequence(Answer(302, headers={"Location": elsewhere})))
    with pytest.raises(RemoteRejected):
        client.job_status("r1")
    assert [r.path for r in server.requests] == ["/remotejobs/v2/job-status"]


def test_a_compressed_or_oversized_answer_is_refused(make_client: MakeClient) -> None:
    gzip = Answer(200, b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"})
    oversized = Answer(200, b"{}", length=64 * 1024 * 1024)  # refused by its declaration
    client, _ = make_client(sequence(gzip, oversized, ok_status()), max_attempts=1)
    with pytest.raises(RemoteTransient, match="refusing a compressed body"):
        client.job_status("r1")
    with pytest.raises(RemoteTransient, match="over the 33554432-byte cap"):
        client.job_status("r1")
    assert client.job_status("r1").status == CEStatus.RUNNING  # transient: a retry may succeed
    # A compressed error answer keeps its status's meaning, without its (never inflated) body.
    rejected, _ = make_client(sequence(Answer(404, b"\x1f\x8b", {"Content-Encoding": "gzip"})))
    with pytest.raises(RemoteRejected, match="HTTP 404"):
        rejected.job_status("r1")


def test_server_text_echoing_the_authenticator_is_redacted(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    message = f"unknown authenticator {SECRET}"
    caplog.set_level(logging.DEBUG)
    for code in (401, 400, 500):
        client, _ = make_client(always(json_answer(code, {"error": message})), max_attempts=2)
        with pytest.raises(RemoteRejected if code < 500 else RemoteTransient) as info:
            client.job_status("r1")
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)
        assert "REDACTED" in str(info.value)
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)


def test_cancel_returns_the_status(make_client: MakeClient) -> None:
    client, _ = make_client(sequence(json_answer(200, {"jobId": "r1", "status": "Aborted"})))
    assert client.cancel_job("r1") == CEStatus.ABORTED


# -- downloads ------------------------------------------------------------------------------


def test_download_caps_a_stream_without_content_length(
    server: FakeServer, make_client: MakeClient
) -> None:
    url = server.base_url + "files/r1/out.txt"
    client, _ = make_client(always(Answer(chunks=chunks_of(10, 5))))
    assert client.download(url) == b"x" * 50
    capped, _ = make_client(always(Answer(chunks=chunks_of(10, 5))), max_download_bytes=49)
    with pytest.raises(DownloadRefused, match="over the 49-byte cap"):
        capped.download(url)


@pytest.mark.parametrize("into", [False, True])
def test_an_endless_stream_is_refused_while_streaming(
    server: FakeServer, make_client: MakeClient, into: bool
) -> None:
    total = 64 * 1024 * 1024
    cap = 1024 * 1024
    client, _ = make_client(
        always(Answer(chunks=chunks_of(64 * 1024, total // (64 * 1024)))), max_download_bytes=cap
    )
    sink = Sink()
    with pytest.raises(OutputTooLarge):
        if into:
            client.download_into(server.base_url + "files/r1/big", sink)
        else:
            client.download(server.base_url + "files/r1/big")
    assert sink.size <= cap
    (sent,) = server.wait_streamed()
    assert sent < total  # the client hung up: the rest of the body was never sent
    # The connection with the unread rest was closed, not reused: the next call gets a new one.
    server.handler = always(ok_status())
    client.job_status("r1")
    assert server.connections == 2


def test_download_refuses_a_declared_oversize_without_reading(
    server: FakeServer, make_client: MakeClient
) -> None:
    # It declares a terabyte and sends 10 bytes: a client that read would wait for the rest.
    client, delays = make_client(
        always(Answer(200, b"x" * 10, length=10**12)), max_download_bytes=999
    )
    with pytest.raises(OutputTooLarge):
        client.download(server.base_url + "files/r1/out.txt")
    sink = Sink()
    with pytest.raises(OutputTooLarge):
        client.download_into(server.base_url + "files/r1/out.txt", sink, max_bytes=999)
    assert sink.chunks == [] and delays == []


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(
    server: FakeServer, make_client: MakeClient
) -> None:
    """The server drops each kept-alive connection after its answer, unannounced: the next
    call sees it gone before sending and goes on a new one, not counted as a failed attempt
    (no backoff), and reaches the server once. (A call sent before the server's close has
    arrived fails as any transport failure does, counted: the server may have read it.)"""

    def handler(seen: Seen) -> Answer:
        if seen.method == "POST":
            body = ok_status().body
            return Answer(200, body, headers={"Content-Type": "application/json"}, length=len(body))
        return Answer(200, b"data", length=4)

    client, delays = make_client(handler)

    def closed(count: int) -> None:
        wait_until(lambda: server.closed == count, 5, what="the server to close")

    for i in range(3):
        assert client.job_status("r1").status == CEStatus.RUNNING
        closed(2 * i + 1)
        assert client.download(server.base_url + "files/r1/out.txt") == b"data"
        closed(2 * i + 2)
    assert delays == [] and len(server.requests) == 6 and server.connections == 6


def test_download_into_streams_and_restarts_a_retried_attempt(
    server: FakeServer, make_client: MakeClient
) -> None:
    client, delays = make_client(
        sequence(
            Answer(200, b"abcdef" * 10, length=100),  # the connection closes mid-body
            Answer(chunks=[b"abc", b"def", b"ghi"]),
        )
    )
    sink = Sink()
    assert client.download_into(server.base_url + "files/r1/out.txt", sink) == 9
    assert b"".join(sink.chunks) == b"abcdefghi" and sink.restarts == 1 and len(delays) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/remotejobs/v2/files/r1/out.txt",
        "http://127.0.0.1:{other}/remotejobs/v2/files/r1/out.txt",
        "http://localhost:{port}/remotejobs/v2/files/r1/out.txt",  # the same server, by name
        "http://127.0.0.1/remotejobs/v2/files/r1/out.txt",
        "http://127.0.0.1.evil/x",
        "file:///etc/passwd",
        "not a url at all",
    ],
)
def test_download_refuses_other_origins_without_a_request(
    server: FakeServer, make_client: MakeClient, url: str
) -> None:
    client, _ = make_client(refuse)
    with pytest.raises(DownloadRefused):
        client.download(url.format(port=server.port, other=free_port()))
    assert server.requests == []


def test_download_accepts_the_same_origin_spelt_differently(server: FakeServer) -> None:
    server.handler = always(Answer(200, b"ok"))
    base = f"http://localhost:{server.port}/remotejobs/v2/"
    with CEClient(base, SECRET, timeout=TIMEOUT) as client:
        assert client.download(f"HTTP://LocalHost:{server.port}/elsewhere/file?x=1") == b"ok"
    assert server.requests[0].path == "/elsewhere/file?x=1"


def test_download_refuses_redirects_and_compressed_bodies(
    server: FakeServer, make_client: MakeClient
) -> None:
    url = server.base_url + "files/r1/out.txt"
    redirect, _ = make_client(always(Answer(307, headers={"Location": "https://evil.example/"})))
    with pytest.raises(DownloadRefused, match="redirect"):
        redirect.download(url)
    gzip, _ = make_client(always(Answer(200, b"\x1f\x8b", {"Content-Encoding": "gzip"})))
    with pytest.raises(DownloadRefused, match="compressed"):
        gzip.download(url)
    with pytest.raises(DownloadRefused, match="compressed"):
        gzip.download_into(url, Sink())
    assert {r.path for r in server.requests} == {"/remotejobs/v2/files/r1/out.txt"}


def test_download_retries_transient_errors_and_rejects_missing_files(
    server: FakeServer, make_client: MakeClient
) -> None:
    client, delays = make_client(sequence(Answer(503), Answer(200, b"ok")))
    assert client.download(server.base_url + "files/r1/out.txt") == b"ok"
    assert len(delays) == 1
    missing, _ = make_client(sequence(json_answer(404, {"error": "no such file"})))
    with pytest.raises(RemoteRejected, match="no such file"):
        missing.download(server.base_url + "files/r1/nope")


# -- ping -----------------------------------------------------------------------------------


def test_ping(make_client: MakeClient) -> None:
    reachable, _ = make_client(sequence(json_answer(404, {"error": "unknown job"})))
    reachable.ping()
    for answer, error in [
        (json_answer(401, {"error": "unknown authenticator"}), RemoteAuthError),
        (json_answer(404, {"detail": "Not Found"}), RemoteRejected),
        (Answer(404, b"<html>not here</html>"), RemoteRejected),
        (Answer(302, headers={"Location": "http://elsewhere/"}), RemoteRejected),
        (Answer(503), RemoteTransient),
        (Answer(429), RemoteTransient),
    ]:
        client, delays = make_client(sequence(answer))
        with pytest.raises(error):
            client.ping()
        assert delays == []  # one attempt, no retries


def test_a_closed_client_sends_nothing_more(server: FakeServer, make_client: MakeClient) -> None:
    client, delays = make_client(always(ok_status()))
    client.job_status("r1")
    client.close()
    client.close()  # twice is fine
    with pytest.raises(RemoteTransient, match="stopping") as info:
        client.job_status("r1")
    assert "the client is closed" in str(info.value.__cause__)
    assert len(server.requests) == 1 and delays == []


def test_observers_see_each_call_with_its_time_and_error(make_client: MakeClient) -> None:
    client, _ = make_client(
        sequence(
            ok_status(),
            json_answer(503, {"error": "busy"}),
            json_answer(503, {"error": "busy"}),
            json_answer(404, {"error": "no such job"}),
            ok_status(),
        ),
        max_attempts=2,
    )
    seen: list[tuple[str, float, type[BaseException] | None]] = []

    def record(op: str, seconds: float, error: BaseException | None) -> None:
        seen.append((op, seconds, type(error) if error is not None else None))

    def broken(op: str, seconds: float, error: BaseException | None) -> None:
        raise RuntimeError("an observer bug")

    remove = client.add_observer(record)
    client.add_observer(broken)  # logged, never breaks the call
    client.job_status("r1")
    with pytest.raises(RemoteTransient):
        client.job_status("r1")  # two attempts, one observation
    client.ping()
    assert [(op, error) for op, _, error in seen] == [
        ("job-status", None),
        ("job-status", RemoteTransient),
        ("ping", None),
    ]
    assert all(seconds >= 0 for _, seconds, _ in seen)
    remove()
    client.job_status("r1")
    assert len(seen) == 3


def test_interrupt_ends_a_backoff_wait_and_stops_retrying(server: FakeServer) -> None:
    server.handler = always(json_answer(503, {"error": "down"}))
    # The default sleep: an interruptible wait. A long backoff would hold a thread for minutes.
    client = CEClient(
        server.base_url,
        SECRET,
        backoff=Backoff(initial=600.0, cap=600.0),  # no jitter: every wait is 600 s
        max_attempts=5,
        timeout=TIMEOUT,
    )
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.create_job(REQUEST, "1:0xA:1")
        except RemoteTransient as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    wait_until(lambda: server.requests, 5, 0.01, "the first attempt")
    client.interrupt()
    worker.join(timeout=5)
    assert not worker.is_alive(), "interrupt() did not end the backoff wait"
    assert len(server.requests) == 1 and "stopping" in str(outcome[0])
    # Once interrupted, a failing call is not retried at all.
    with pytest.raises(RemoteTransient, match="stopping"):
        client.job_status("r1")
    assert len(server.requests) == 2
    client.close()

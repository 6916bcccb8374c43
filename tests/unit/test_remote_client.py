"""CEClient edge cases, driven through an httpx.MockTransport (no network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from bridge.errors import (
    ConfigError,
    DownloadRefused,
    RemoteAuthError,
    RemoteRejected,
    RemoteTransient,
)
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, CEStatus

BASE = "https://ce.example/remotejobs/v2/"
SECRET = "0123456789abcdef0123456789abcdef"
REQUEST = CEJobRequest("charityengine:test", "echo hi", 1, 64, 64, 0, 0, 1)

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **kwargs: object) -> tuple[CEClient, list[float]]:
    delays: list[float] = []
    options: dict[str, object] = {"backoff_base": 0.01, "backoff_max": 1.0, **kwargs}
    client = CEClient(
        BASE,
        SECRET,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=delays.append,
        **options,  # type: ignore[arg-type]
    )
    return client, delays


def answers(*responses: httpx.Response) -> Handler:
    pending = iter(responses)

    def handler(_request: httpx.Request) -> httpx.Response:
        return next(pending)

    return handler


def ok_status(job_id: str = "r1") -> httpx.Response:
    return httpx.Response(200, json={"jobId": job_id, "status": "Running"})


def test_requests_carry_the_documented_body_and_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"jobId": "r1"})

    client, _ = make_client(handler)
    assert client.create_job(REQUEST, "1:0xabc:7") == "r1"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == BASE + "job-create"
    assert request.headers["Idempotency-Key"] == "1:0xabc:7"
    assert json.loads(request.content) == REQUEST.to_body(SECRET)


def test_base_url_gets_a_trailing_slash_and_is_validated() -> None:
    assert CEClient("http://h:1/remotejobs/v2", "a").base_url == "http://h:1/remotejobs/v2/"
    for bad in ("ftp://h/x/", "not a url", "http:///x", "http://h/x/?q=1"):
        with pytest.raises(ConfigError):
            CEClient(bad, "a")
    with pytest.raises(ConfigError):
        CEClient(BASE, "")
    with pytest.raises(ConfigError):
        CEClient(BASE, "a", max_attempts=0)


def test_repr_hides_the_authenticator() -> None:
    client, _ = make_client(answers())
    assert SECRET not in repr(client) and SECRET not in str(client)
    assert "REDACTED" in repr(client)


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    client, delays = make_client(
        answers(*[httpx.Response(503)] * 6, ok_status()),
        max_attempts=7,
        backoff_base=0.1,
        backoff_max=0.5,
    )
    assert client.job_status("r1").status == CEStatus.RUNNING
    caps = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert len(delays) == len(caps)
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps, strict=True))


def test_retry_after_seconds_and_dates_are_honoured() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, delays = make_client(
        answers(
            httpx.Response(429, headers={"Retry-After": "0.25"}),
            httpx.Response(503, headers={"Retry-After": "0.5"}),
            httpx.Response(429, headers={"Retry-After": later}),
            ok_status(),
        ),
        backoff_max=60.0,
    )
    client.job_status("r1")
    assert delays[0] >= 0.25 and delays[1] >= 0.5 and 25 < delays[2] <= 30


def test_a_retry_after_beyond_backoff_max_is_returned_not_slept() -> None:
    client, delays = make_client(
        answers(httpx.Response(429, headers={"Retry-After": "120"})), backoff_max=10.0
    )
    with pytest.raises(RemoteTransient) as info:
        client.job_status("r1")
    assert info.value.retry_after == 120.0
    assert delays == []


def test_budget_exhausted_raises_transient() -> None:
    client, delays = make_client(lambda _r: httpx.Response(500), max_attempts=3)
    with pytest.raises(RemoteTransient, match="gave up after 3 attempts"):
        client.job_status("r1")
    assert len(delays) == 2


def test_transport_errors_and_malformed_bodies_are_retried() -> None:
    calls: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.ConnectError("connection refused"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(200, content=b'{"jobId": "r1", "sta'),
            httpx.Response(200, json={"jobId": "other", "status": "Running"}),
            httpx.Response(200, json=["not", "an", "object"]),
            ok_status(),
        ]
    )

    def handler(_request: httpx.Request) -> httpx.Response:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    client, delays = make_client(handler, max_attempts=6)
    assert client.job_status("r1").remote_job_id == "r1"
    assert len(delays) == 5


@pytest.mark.parametrize(
    ("code", "error"),
    [(400, RemoteRejected), (404, RemoteRejected), (422, RemoteRejected), (401, RemoteAuthError)],
)
def test_4xx_is_not_retried_and_keeps_ces_message(code: int, error: type[Exception]) -> None:
    client, delays = make_client(answers(httpx.Response(code, json={"error": "bad thing"})))
    with pytest.raises(error) as info:
        client.create_job(REQUEST, "k")
    assert str(info.value) == "bad thing"
    assert isinstance(info.value, RemoteRejected) and info.value.status_code == code
    assert delays == []


def test_a_redirect_is_not_followed() -> None:
    client, _ = make_client(answers(httpx.Response(302, headers={"Location": "https://evil/"})))
    with pytest.raises(RemoteRejected):
        client.job_status("r1")


def test_server_text_echoing_the_authenticator_is_redacted() -> None:
    message = f"unknown authenticator {SECRET}"
    for code in (401, 400, 500):

        def handler(_request: httpx.Request, code: int = code) -> httpx.Response:
            return httpx.Response(code, json={"error": message})

        client, _ = make_client(handler, max_attempts=2)
        with pytest.raises(RemoteRejected if code < 500 else RemoteTransient) as info:
            client.job_status("r1")
        assert SECRET not in str(info.value) and SECRET not in repr(info.value)
        assert "REDACTED" in str(info.value)


def test_cancel_returns_the_status() -> None:
    client, _ = make_client(answers(httpx.Response(200, json={"jobId": "r1", "status": "Aborted"})))
    assert client.cancel_job("r1") == CEStatus.ABORTED


# -- downloads ------------------------------------------------------------------------------


def stream_of(chunks: list[bytes]) -> httpx.SyncByteStream:
    class Stream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks

    return Stream()


def test_download_caps_a_stream_without_content_length() -> None:
    chunks = [b"x" * 10] * 5
    client, _ = make_client(lambda _r: httpx.Response(200, stream=stream_of(chunks)))
    assert client.download(BASE + "files/r1/out.txt") == b"x" * 50
    capped, _ = make_client(
        lambda _r: httpx.Response(200, stream=stream_of(chunks)), max_download_bytes=49
    )
    with pytest.raises(DownloadRefused, match="over the 49-byte cap"):
        capped.download(BASE + "files/r1/out.txt")


def test_download_refuses_a_declared_oversize_without_reading() -> None:
    client, _ = make_client(
        lambda _r: httpx.Response(200, headers={"Content-Length": "1000"}, content=b"x" * 1000),
        max_download_bytes=999,
    )
    with pytest.raises(DownloadRefused):
        client.download(BASE + "files/r1/out.txt")


@pytest.mark.parametrize(
    "url",
    [
        "http://ce.example/remotejobs/v2/files/r1/out.txt",
        "https://ce.example:8443/remotejobs/v2/files/r1/out.txt",
        "https://other.example/remotejobs/v2/files/r1/out.txt",
        "https://ce.example.evil/x",
        "file:///etc/passwd",
    ],
)
def test_download_refuses_other_origins_without_a_request(url: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    client, _ = make_client(handler)
    with pytest.raises(DownloadRefused):
        client.download(url)


def test_download_accepts_the_same_origin_spelt_differently() -> None:
    client, _ = make_client(lambda _r: httpx.Response(200, content=b"ok"))
    assert client.download("https://CE.example:443/elsewhere/file") == b"ok"


def test_download_refuses_redirects_and_compressed_bodies() -> None:
    redirect, _ = make_client(
        lambda _r: httpx.Response(307, headers={"Location": "https://evil.example/"})
    )
    with pytest.raises(DownloadRefused, match="redirect"):
        redirect.download(BASE + "files/r1/out.txt")
    gzip, _ = make_client(
        lambda _r: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")
    )
    with pytest.raises(DownloadRefused, match="compressed"):
        gzip.download(BASE + "files/r1/out.txt")


def test_download_retries_transient_errors_and_rejects_missing_files() -> None:
    client, delays = make_client(answers(httpx.Response(503), httpx.Response(200, content=b"ok")))
    assert client.download(BASE + "files/r1/out.txt") == b"ok"
    assert len(delays) == 1
    missing, _ = make_client(answers(httpx.Response(404, json={"error": "no such file"})))
    with pytest.raises(RemoteRejected, match="no such file"):
        missing.download(BASE + "files/r1/nope")


# -- ping -----------------------------------------------------------------------------------


def test_ping() -> None:
    reachable, _ = make_client(answers(httpx.Response(404, json={"error": "unknown job"})))
    reachable.ping()
    for response, error in [
        (httpx.Response(401, json={"error": "unknown authenticator"}), RemoteAuthError),
        (httpx.Response(404, json={"detail": "Not Found"}), RemoteRejected),
        (httpx.Response(404, text="<html>not here</html>"), RemoteRejected),
        (httpx.Response(503), RemoteTransient),
        (httpx.Response(429), RemoteTransient),
    ]:
        client, delays = make_client(answers(response))
        with pytest.raises(error):
            client.ping()
        assert delays == []  # one attempt, no retries


def test_a_passed_in_http_client_is_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda _r: ok_status()))
    with CEClient(BASE, SECRET, http=http) as client:
        client.job_status("r1")
    assert not http.is_closed
    http.close()


def test_observers_see_each_call_with_its_time_and_error() -> None:
    client, _ = make_client(
        answers(
            ok_status(),
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(404, json={"error": "no such job"}),
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


def test_interrupt_ends_a_backoff_wait_and_stops_retrying() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"error": "down"})

    # The default sleep: an interruptible wait. A long backoff would hold a thread for minutes.
    client = CEClient(
        BASE,
        SECRET,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        backoff_base=600.0,
        backoff_max=600.0,
        max_attempts=5,
    )
    client._rng.uniform = lambda _low, high: high  # type: ignore[method-assign]
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.create_job(REQUEST, "1:0xA:1")
        except RemoteTransient as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    client.interrupt()
    worker.join(timeout=5)
    assert not worker.is_alive(), "interrupt() did not end the backoff wait"
    assert len(calls) == 1 and "stopping" in str(outcome[0])
    # Once interrupted, a failing call is not retried at all.
    with pytest.raises(RemoteTransient, match="stopping"):
        client.job_status("r1")
    assert len(calls) == 2

"""A programmable HTTP server on 127.0.0.1 for the CE client's tests.

Real sockets and real HTTP/1.1 (kept-alive connections, chunked bodies, dropped connections, a
server that never answers), with the answer to each request chosen by the test: a
:data:`Handler` gets the request as received and returns an :class:`Answer`. Every request is
recorded (:attr:`FakeServer.requests`), and so are the connections accepted and the body bytes
each streamed answer got out before the client went away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from bridge.waiting import wait_until


@dataclass(frozen=True)
class Seen:
    """A request as the server received it (header names in lower case)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """What the server sends back.

    Attributes:
        status: the status code.
        body: the body, with a ``Content-Length`` (``length`` if set, else its size).
        headers: more headers.
        chunks: if set, the body is sent in these chunks with ``Transfer-Encoding: chunked``
            (no ``Content-Length``) and ``body`` is ignored.
        length: a ``Content-Length`` to declare instead of ``len(body)``; the connection is
            closed after the body (a shorter body is cut short, not awaited).
        drop: close the connection without answering.
        hang: answer nothing until the server stops (the client times out).
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None
    length: int | None = None
    drop: bool = False
    hang: bool = False


def json_answer(status: int, value: object, headers: Mapping[str, str] | None = None) -> Answer:
    """An answer with a JSON body."""
    merged = {"Content-Type": "application/json", **(headers or {})}
    return Answer(status, json.dumps(value).encode(), merged)


Handler = Callable[[Seen], Answer]


def sequence(*answers: Answer) -> Handler:
    """A handler that gives ``answers`` in order, one a request (a request too many fails)."""
    pending = iter(answers)
    lock = threading.Lock()

    def handler(_seen: Seen) -> Answer:
        with lock:
            answer = next(pending, None)
        if answer is None:
            raise AssertionError("a request beyond the answers the test planned")
        return answer

    return handler


def always(answer: Answer) -> Handler:
    """A handler that gives ``answer`` to every request."""
    return lambda _seen: answer


def refuse(_seen: Seen) -> Answer:
    """A handler for tests where no request may arrive."""
    raise AssertionError("no request may be sent")


class _CountingServer(ThreadingHTTPServer):
    """Counts the connections it has closed (``closed``), once each socket is shut."""

    closed = 0

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed += 1  # one thread a connection; a test only waits for it to grow


class FakeServer:
    """The server, in a background thread, from ``with FakeServer(handler) as server``.

    Args:
        handler: chooses each answer; it may be replaced at any time (``server.handler = ...``).
        prefix: the path of :attr:`base_url` (the CE API root by default).

    A handler that raises makes a 500 answer and is recorded in :attr:`errors`, so that a test
    can tell an unplanned request from a server fault it planned.
    """

    def __init__(self, handler: Handler = refuse, prefix: str = "/remotejobs/v2/") -> None:
        self.handler = handler
        self.requests: list[Seen] = []
        self.errors: list[BaseException] = []
        self.streamed: list[int] = []
        self.connections = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _CountingServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # kept-alive connections idle in their threads
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.base_url = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()  # ends the hanging answers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def closed(self) -> int:
        """Connections the server has closed so far (after their sockets were shut)."""
        return self._server.closed

    def wait_streamed(self, count: int = 1, timeout: float = 30.0) -> list[int]:
        """Waits until ``count`` streamed answers have ended; returns their byte counts."""
        wait_until(lambda: len(self.streamed) >= count, timeout, 0.01, "streamed answers")
        return self.streamed

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, chunked
            disable_nagle_algorithm = True  # headers and body go in two writes

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.command, self.path, headers, body)
                with server._lock:
                    server.requests.append(seen)
                try:
                    answer = server.handler(seen)
                except Exception as exc:
                    with server._lock:
                        server.errors.append(exc)
                    answer = Answer(500, b"the test server's handler failed")
                self._answer(answer)

            def _answer(self, answer: Answer) -> None:
                if answer.hang:
                    server._stopping.wait()
                if answer.drop or answer.hang:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.chunks is None:
                    size = len(answer.body) if answer.length is None else answer.length
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    self.close_connection = answer.length is not None
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                try:
                    for chunk in answer.chunks:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client went away (it refused the rest)
                    self.close_connection = True
                finally:
                    with server._lock:
                        server.streamed.append(sent)

        return Handler


def chunks_of(size: int, count: int) -> Sequence[bytes]:
    """``count`` chunks of ``size`` bytes (one object repeated: cheap however many)."""
    return [b"x" * size] * count

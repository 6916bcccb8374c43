"""``bridge.http_pool.ConnectionPool`` against a raw socket server on 127.0.0.1 that answers,
cuts answers short and drops connections exactly when a test says so."""

from __future__ import annotations

import http.client
import io
import socket
import threading
from collections.abc import Callable

import pytest

from bridge.http_pool import ConnectionPool, parse_header_lines
from bridge.waiting import wait_until

#: What the server does with each request it reads, in order over all connections.
ANSWER = "answer"  # a whole answer; the connection stays open
ANSWER_THEN_CLOSE = "answer-then-close"  # a whole answer, then the connection closed unannounced
CUT_SHORT = "cut-short"  # 10 of the 100 bytes declared, then the connection closed
READ_THEN_CLOSE = "read-then-close"  # the request read (and acted on), no answer, closed


class RawServer:
    """Answers each request with the next of ``actions`` (one of the above, or the bytes of an
    answer, sent as they are: the connection stays open); records requests and connections."""

    def __init__(self, actions: list[str | bytes]) -> None:
        self.actions = actions
        self.requests: list[str] = []
        self.connections = 0
        self.closed = 0  # connections the server has closed
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    return
                while reader.readline() not in (b"\r\n", b""):
                    pass  # headers (the tests send no body)
                self.requests.append(line.decode().split()[1])
                action = self.actions.pop(0)
                if isinstance(action, bytes):
                    conn.sendall(action)
                    continue
                if action == READ_THEN_CLOSE:
                    break
                if action == CUT_SHORT:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    break
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if action == ANSWER_THEN_CLOSE:
                    break
            reader.close()
        self.closed += 1

    def close(self) -> None:
        self._listener.close()


Serve = Callable[[list[str | bytes]], RawServer]


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Serve:
    """Starts a ``RawServer``, closed when the test ends."""

    def start(actions: list[str | bytes]) -> RawServer:
        server = RawServer(actions)
        request.addfinalizer(server.close)
        return server

    return start


def _get(pool: ConnectionPool, target: str) -> bytes:
    with pool.exchange("GET", target, None, {}) as response:
        return response.read()


@pytest.mark.parametrize("reading", ["read", "read1"])
def test_an_answer_cut_short_closes_its_connection(serve: Serve, reading: str) -> None:
    # http.client marks a body that ended early as closed, as it does one read to its end:
    # only the bytes still owed tell them apart. Pooled, the dead connection would be the
    # next caller's (and, half-closed by the server, could take a request it never answers).
    server = serve([CUT_SHORT, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5)
    answer = pool.send("GET", "/a", None, {})
    with pytest.raises(http.client.IncompleteRead):
        if reading == "read":
            answer.response.read()
        else:
            while answer.response.read1(65536):
                pass
            raise http.client.IncompleteRead(b"", answer.response.length)
    pool.finish(answer)
    assert pool.idle == 0
    assert _get(pool, "/b") == b"ok"
    assert server.requests == ["/a", "/b"] and server.connections == 2


def test_a_connection_read_to_its_end_is_reused(serve: Serve) -> None:
    server = serve([ANSWER, ANSWER, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5)
    assert [_get(pool, f"/{i}") for i in range(3)] == [b"ok"] * 3
    assert server.connections == 1 and pool.idle == 1


@pytest.mark.parametrize("resend", [False, True])
def test_an_idle_connection_the_server_closed_is_not_used(serve: Serve, resend: bool) -> None:
    # The server drops the kept-alive connection after its answer, unannounced: the next
    # request goes on a new connection at once, sent once, whatever ``resend`` says.
    server = serve([ANSWER_THEN_CLOSE, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5, resend=resend)
    assert _get(pool, "/a") == b"ok"
    wait_until(lambda: server.closed == 1, 5, what="the server to close the connection")
    assert _get(pool, "/b") == b"ok"
    assert server.requests == ["/a", "/b"] and server.connections == 2


def test_a_request_read_and_left_unanswered_is_sent_again_only_with_resend(
    serve: Serve,
) -> None:
    # The server reads a request on a kept-alive connection and closes it without an answer:
    # it may have acted on it. Without ``resend`` the caller gets the error (and decides);
    # with it the request is sent once more on a new connection.
    server = serve([ANSWER, READ_THEN_CLOSE])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5)
    assert _get(pool, "/a") == b"ok"
    with pytest.raises(http.client.RemoteDisconnected):
        _get(pool, "/b")
    assert server.requests == ["/a", "/b"]

    server = serve([ANSWER, READ_THEN_CLOSE, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5, resend=True)
    assert _get(pool, "/a") == b"ok"
    assert _get(pool, "/b") == b"ok"
    assert server.requests == ["/a", "/b", "/b"] and server.connections == 2


# ---------------------------------------------------------------------------- header blocks

WELL_FORMED = [
    b"Content-Length: 2\r\n\r\n",
    b"content-type:application/json\r\nX-A: 1\r\nx-a: 2\r\nServer:   uvicorn  \r\n\r\n",
    b"Date: Wed, 02 Dec 2026 14:00:00 GMT\r\nRetry-After: 3\r\nEmpty:\r\n\r\n",
    b"Set-Cookie: a=b; Path=/\r\nSet-Cookie: c=d\r\nX-Latin: caf\xe9\n\n",
    b"\r\n",
]


def _lines(block: bytes) -> list[bytes]:
    return io.BytesIO(block).readlines()


@pytest.mark.parametrize("block", WELL_FORMED)
def test_a_header_block_reads_as_http_client_reads_it(block: bytes) -> None:
    ours = parse_header_lines(_lines(block))
    theirs = http.client.parse_headers(io.BytesIO(block))
    assert [(k, v.strip()) for k, v in ours.items()] == [(k, v.strip()) for k, v in theirs.items()]
    for name in {k.lower() for k in theirs}:  # first of repeated fields, any case
        assert ours.get(name) == (theirs.get(name) or "").strip()
        assert ours.get_all(name.upper()) == [v.strip() for v in theirs.get_all(name) or []]


def test_a_folded_field_joins_its_lines_with_one_space() -> None:
    message = parse_header_lines(
        _lines(b"X-Long: one\r\n  two\r\n\tthree\r\nX-Empty:\r\n more\r\nB: 1\r\n\r\n")
    )
    assert message.items() == [("X-Long", "one two three"), ("X-Empty", "more"), ("B", "1")]
    # Many long folds are joined once, not copied again at each (a hostile server's block).
    fold = b" " + b"x" * 60_000 + b"\r\n"
    many = parse_header_lines(_lines(b"X: a\r\n" + fold * 90 + b"\r\n"))
    assert len(many["X"]) == 1 + 90 * 60_001


@pytest.mark.parametrize(
    "block",
    [
        b"no colon here\r\n\r\n",  # the e-mail parser would end the block here
        b"Content-Length : 5\r\n\r\n",  # space before the colon
        b": empty name\r\n\r\n",
        b"Bad(Name): 1\r\n\r\n",
        b" folded first\r\n\r\n",
        b"X-A: 1\rContent-Length: 5\r\n\r\n",  # the e-mail parser would see two fields
        b"X-A: \x00\r\n\r\n",
        b"X-A: 1\r\r\n\r\n",  # one line ending is taken off, not every CR
        b"Content-Length: 0\r\r\nTransfer-Encoding: chunked\r\n\r\n",  # not an empty line
        b"Content-Length: 2\r\nno colon\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_a_malformed_header_line_fails_the_answer(block: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        parse_header_lines(_lines(block))


def test_answers_are_framed_by_their_headers_and_a_malformed_one_is_refused(
    serve: Serve,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"2\r\nok\r\n1\r\n!\r\n0\r\n\r\n"
    )
    empty = b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"
    both = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3\r\nabc\r\n0\r\n\r\n"
    )
    malformed = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nbroken\r\n\r\nok"
    server = serve([chunked, empty, both, ANSWER, malformed, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5)
    assert _get(pool, "/chunked") == b"ok!"
    assert _get(pool, "/empty") == b""  # 204: no body, whatever Content-Length says
    assert _get(pool, "/both") == b"abc"  # chunked wins over Content-Length
    assert _get(pool, "/plain") == b"ok"
    assert server.connections == 1 and pool.idle == 1  # each framed exactly: one connection
    with pytest.raises(http.client.HTTPException):
        _get(pool, "/malformed")
    assert pool.idle == 0  # its connection closed, never reused
    assert _get(pool, "/after") == b"ok" and server.connections == 2


def test_interim_answers_are_skipped_and_a_switched_connection_is_not_reused(
    serve: Serve,
) -> None:
    # A 103 Early Hints (any 1xx) comes before the answer to the same request: taken for the
    # answer, it would leave the real one to be read as the next request's.
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
    switched = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\n\r\n"
    server = serve([hints + hints + answer, ANSWER, switched, ANSWER])
    pool = ConnectionPool("127.0.0.1", server.port, https=False, timeout=5)
    assert _get(pool, "/a") == b"first"
    assert _get(pool, "/b") == b"ok" and server.connections == 1
    with pool.exchange("GET", "/c", None, {}) as response:
        assert response.status == 101
    assert pool.idle == 0  # the connection speaks another protocol now: closed
    assert _get(pool, "/d") == b"ok" and server.connections == 2

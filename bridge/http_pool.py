"""Kept-alive ``http.client`` connections to one origin, shared by threads: the one HTTP
transport of the JSON-RPC endpoints (``bridge.chain.rpc.JsonRpcHttp``) and of the CE client
(``bridge.remote.client.CEClient``).

What it guarantees:

- **One caller a connection.** ``send`` takes an idle connection (or opens one); ``finish``
  puts it back only once its answer was read to the end and the server keeps it open, so no
  connection is ever reused with unread bytes in it; any other is closed.
- **A connection the server closed while idle is not used**: before an idle connection is
  reused, its socket is checked (as urllib3 does): one the server closed, or that has bytes
  nobody asked for, is closed instead. A pool made with ``resend=True`` (for requests that are
  safe to repeat) also sends a request once more on a new connection if a reused one fails
  before any answer (``STALE``: the server closed it between the check and the request, or
  after reading the request without answering). A new connection's failure is the caller's.
- **Bounded**: at most ``max_idle`` idle connections are kept; more callers at once each open
  their own, closed after use. After ``close`` no request is sent (``PoolClosed``).
- **Headers read without the ``email`` package**: ``http.client`` parses an answer's header
  block with the general e-mail parser, a quarter of the transport's CPU for the bridge's small
  answers. Here the lines are split by hand into the same ``http.client.HTTPMessage`` (its
  ``get`` still answers with the first of repeated fields), and the rest of
  ``HTTPResponse.begin`` is unchanged but for interim answers (every 1xx but 101 is skipped,
  not 100 alone). A line that is not ``name: value``, or holds a bare CR or a NUL (where the
  e-mail parser would quietly end the block, or split the line in two), fails the answer as
  ``http.client.HTTPException``. As RFC 9112 reads a field, a value loses its trailing spaces
  and a folded line joins it with one space (the e-mail parser keeps both as they came).
- **Nothing more**: no redirects, no decompression, no proxy from the environment, no retries
  beyond the stale one. Errors are ``http.client``'s and the socket's (``OSError``,
  ``TimeoutError``, ``http.client.HTTPException``), for the caller to translate; none quotes a
  request body.
"""

from __future__ import annotations

import http.client
import re
import select
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

#: Errors of a kept-alive connection the server closed while it was idle.
STALE: Final = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
)


class PoolClosed(ConnectionError):
    """The pool was closed: no request is sent."""


@dataclass(frozen=True)
class Answer:
    """An answer whose body the caller reads, and the connection it came on."""

    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection


class ConnectionPool:
    """Connections to ``host``:``port`` over HTTPS (``context``: its TLS settings, by default
    Python's, which verify the certificate and the host name) or HTTP; ``timeout``: seconds to
    connect and for each read or write; ``resend``: send a request once more on a new
    connection when a reused one fails before its answer (only for requests safe to repeat:
    the server may have acted on the first)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        https: bool,
        timeout: float,
        context: ssl.SSLContext | None = None,
        max_idle: int = 64,
        resend: bool = False,
    ) -> None:
        self._host, self._port, self._https = host, port, https
        self._resend = resend
        self._timeout = timeout
        self._context = context
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        """Sends one request and reads its status and headers; the body is the caller's to
        read, then to hand back with ``finish`` (or use ``exchange``).

        Raises:
            PoolClosed: the pool was closed.
            OSError, http.client.HTTPException: the transport failed (the connection closed).
        """
        conn, reused = self._connection()
        try:
            try:
                return Answer(self._request(conn, method, target, body, headers), conn)
            except STALE:
                conn.close()
                if not (reused and self._resend):
                    raise
                conn = self._new()
                return Answer(self._request(conn, method, target, body, headers), conn)
        except BaseException:
            conn.close()
            raise

    def finish(self, answer: Answer) -> None:
        """Puts the answer's connection back if its body was read to the end and the server
        keeps it open (and the pool has room and is open); closes it otherwise (an answer cut
        short included: ``http.client`` marks it closed too, with bytes still owed)."""
        conn, response = answer.connection, answer.response
        if not response.isclosed() and response.length == 0:
            # Read to its declared end by ``read1``, which leaves the count at 0 without
            # marking the answer done: done now (the socket stays open for the next request).
            response.close()
        # ``length`` is 0 once a body of declared length was read whole, and None only for a
        # chunked body read to its last chunk (one without either is ``will_close``).
        if (
            response.isclosed()
            and not response.will_close
            and not response.length
            and response.status >= 200  # a 101 switched the connection to another protocol
        ):
            with self._lock:
                if not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
        conn.close()

    @contextmanager
    def exchange(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Iterator[http.client.HTTPResponse]:
        """``send``, the answer yielded to the block, ``finish`` when it ends."""
        answer = self.send(method, target, body, headers)
        try:
            yield answer.response
        finally:
            self.finish(answer)

    @property
    def idle(self) -> int:
        """How many connections wait for a request."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Closes the idle connections and refuses new requests; one in use is closed when its
        caller finishes."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (True: reused) or a new one (False)."""
        while True:
            with self._lock:
                if self._closed:
                    raise PoolClosed("the connection pool is closed")
                if not self._idle:
                    break
                conn = self._idle.pop()
            if _open(conn):
                return conn, True
            conn.close()
        return self._new(), False

    def _new(self) -> http.client.HTTPConnection:
        """A new connection (opened by its first request)."""
        if self._https:
            return _HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        return _HTTPConnection(self._host, self._port, timeout=self._timeout)

    @staticmethod
    def _request(
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> http.client.HTTPResponse:
        conn.request(method, target, body, dict(headers))
        return conn.getresponse()


#: The blanks around a field's value and before a folded line (RFC 9110's OWS).
_BLANK = " \t"
#: A field name as RFC 9110 defines it (a token).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """The fields of an answer's header block (``lines`` as ``http.client`` reads them, the
    empty line that ends the block included), as ``http.client.parse_headers`` returns them.

    A continuation line (obsolete folding) joins the field before it with one space.

    Raises:
        http.client.HTTPException: a line that is not ``name: value`` (no colon, a name that
            is not a token, space before the colon, a bare CR or a NUL in it) or a
            continuation with no field before it.
    """
    fields: list[tuple[str, list[str]]] = []  # a field's pieces: its line and its folds
    for raw in lines:
        text = raw.decode("iso-8859-1")
        line = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")  # one ending
        if not line:
            break
        if "\r" in line or "\0" in line:  # a bare CR ends a line for the e-mail parser only
            raise http.client.HTTPException(f"malformed header line: {line[:80]!r}")
        if line[0] in _BLANK:
            if not fields:
                raise http.client.HTTPException("malformed header block: starts with a fold")
            fields[-1][1].append(line.strip(_BLANK))
            continue
        name, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise http.client.HTTPException(f"malformed header line: {line[:80]!r}")
        fields.append((name, [value.strip(_BLANK)]))
    message = http.client.HTTPMessage()
    message._headers = [  # type: ignore[attr-defined]  # email.message.Message's list
        (name, " ".join(piece for piece in pieces if piece)) for name, pieces in fields
    ]
    return message


class _Response(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` with ``begin`` reading the header block through
    ``parse_header_lines`` (see the module) and skipping every interim answer (CPython skips
    100 Continue alone, and takes a 103 Early Hints for the answer, leaving the real one to be
    read as the next request's); otherwise CPython 3.11's ``begin``, line for line."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # past every interim answer (1xx, but 101: the last this connection has)
            version, status, reason = self._read_status()
            if not 100 <= status < 200 or status == http.client.SWITCHING_PROTOCOLS:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        lines = http.client._read_headers(self.fp)
        self.headers = self.msg = parse_header_lines(lines)
        transfer = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer) and transfer.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _Response


def _open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry a request: its socket is there and has nothing to
    read (a server that closed it has sent its end of file; any other bytes were never asked
    for)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):  # closed under us
        return False

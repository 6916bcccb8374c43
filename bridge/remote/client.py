"""Synchronous client for Charity Engine's Remote API (the bridge process is sync + threads).

What it guarantees:

- **The authenticator stays secret.** It is sent only in request bodies to the configured base
  URL. It never appears in an exception message, a log line or the client's ``repr``: request
  bodies are never put in errors or logs, and text taken from a server's answer is redacted
  before use.
- **Transient failures are retried, permanent ones are not.** HTTP 5xx and 429, timeouts,
  connection errors and malformed bodies are retried up to ``max_attempts`` times with
  exponential backoff and full jitter; a ``Retry-After`` is honoured (the wait is at least that
  long). A ``Retry-After`` longer than the backoff's cap is not slept through: the call raises
  :class:`~bridge.errors.RemoteTransient` at once with ``retry_after`` set, so the caller
  reschedules instead of blocking a thread. When the budget is spent the call raises
  :class:`~bridge.errors.RemoteTransient`. A 401 raises :class:`~bridge.errors.RemoteAuthError`
  and any other 4xx :class:`~bridge.errors.RemoteRejected` with CE's message, immediately.
- **Creation is idempotent on the wire.** ``job-create`` always carries an ``Idempotency-Key``,
  so its retries cannot create a second job on a server that honours the header.
- **Downloads are confined.** Only URLs with the base URL's scheme, host and port are fetched,
  redirects are never followed, compressed bodies are refused (never inflated), and a body over
  ``max_download_bytes`` is refused by its declared length or while streaming, so no more than
  the cap (plus one network chunk) is ever held in memory. API answers are bounded the same way
  (:data:`_ANSWER_CAP`).

Every assumption about CE's paths and bodies comes from :mod:`bridge.remote.convention`.
One :class:`CEClient` may be shared by several threads: it sends through one pool of kept-alive
``http.client`` connections to the CE origin (``bridge.http_pool``, the JSON-RPC endpoints'
transport too), which follows no redirect, inflates no body and retries nothing but a request
on a connection the server closed while idle (the client does its own retries). Plain
``http.client`` rather than urllib3's pool, and urllib3 rather than httpx before it, for the
CPU: the bridge makes ~4 calls a job (docs/BENCHMARKS.md, "The CE client on urllib3", "The
ninth session"). URLs are parsed by urllib3's RFC 3986 parser.

**Observable.** :meth:`CEClient.add_observer` registers a :data:`CallObserver`, called after each
API call (its retries included) with the call's name, its wall time and the error it raised; the
bridge's ``/metrics`` uses it for CE latency and errors by kind. An observer that raises is
logged and ignored: metrics never break a call.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import quote

import certifi
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from bridge.errors import (
    ConfigError,
    DownloadRefused,
    OutputTooLarge,
    RemoteAuthError,
    RemoteError,
    RemoteRejected,
    RemoteTransient,
)
from bridge.http_pool import ConnectionPool, PoolClosed
from bridge.lifecycle import Closing
from bridge.remote.convention import (
    IDEMPOTENCY_HEADER,
    JOB_CANCEL_PATH,
    JOB_CREATE_PATH,
    JOB_STATUS_PATH,
    CEJobRequest,
    CEStatus,
    RemoteJobStatus,
    error_message,
    job_ref_body,
    parse_cancel_response,
    parse_create_response,
)
from bridge.retry import Backoff

log = logging.getLogger("bridge.remote.client")

T = TypeVar("T")

MIB: Final = 1024 * 1024
_STREAM_CHUNK: Final = 256 * 1024  # bytes read at a time when streaming a file to disk
_ERROR_BODY_CAP: Final = 64 * 1024  # bytes of an error body read to find CE's message
#: Bytes of a 2xx API answer read. A job-status answer lists the output files (~150 bytes
#: each), so this holds far more than ``max_output_files`` of them.
_ANSWER_CAP: Final = 32 * MIB
_MESSAGE_CAP: Final = 500  # characters of a server message kept in an exception
_REDACTED: Final = "[REDACTED]"
_PING_JOB_ID: Final = "ce-bridge-readiness-probe"
#: Connections to CE kept alive by default (``max_connections``).
_POOL_SIZE: Final = 64
#: Every request: a body as sent (``identity`` is also http.client's default; said here so
#: that no layer may add gzip).
_ACCEPT: Final = {"Accept-Encoding": "identity"}
_POST_HEADERS: Final = {**_ACCEPT, "Content-Type": "application/json"}

#: ``observer(op, seconds, error)``, called after every API call: ``op`` is ``job-create``,
#: ``job-status``, ``job-cancel``, ``download`` or ``ping``; ``seconds`` the call's wall time,
#: retries and backoff included; ``error`` the error it raised, None when it succeeded.
CallObserver = Callable[[str, float, RemoteError | None], None]


class CEClient(Closing):
    """Client for one CE account at one base URL (``.../remotejobs/v2/``).

    Args:
        base_url: The API root, e.g. :data:`~bridge.remote.convention.DEFAULT_BASE_URL`; a
            trailing ``/`` is added if missing.
        authenticator: The CE account's authenticator (a secret).
        timeout: Seconds allowed to connect, and for each read from the connection, in each
            HTTP attempt.
        max_attempts: Attempts per call, the first included (at least 1).
        backoff: The delays between attempts (``bridge.retry.Backoff``); by default full
            jitter under 0.2 s doubling up to 10 s. Its ``cap`` is the longest delay slept.
        sleep: Called with each delay; tests inject a recorder. By default the delay is an
            interruptible wait that :meth:`interrupt` ends.
        max_download_bytes: The largest output file :meth:`download` accepts.
        max_connections: Connections to CE kept alive between calls: at least as many as the
            calls the caller makes at once, so that none is closed and opened again per call.
            The pool does not block: a call beyond them opens a connection and closes it after.

    Raises:
        ConfigError: An empty authenticator, a base URL that is not http(s) with a host (or
            that carries credentials, a query or a fragment), or nonsensical retry settings.
    """

    def __init__(
        self,
        base_url: str,
        authenticator: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] | None = None,
        max_download_bytes: int = 64 * MIB,
        max_connections: int = _POOL_SIZE,
    ) -> None:
        if not authenticator:
            raise ConfigError("the CE authenticator is empty")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if timeout <= 0 or max_download_bytes < 0 or max_connections < 1:
            raise ConfigError(
                "timeout and max_connections must be positive, the download cap non-negative"
            )
        base = _parse_base_url(base_url)
        self._base_url = base.url
        self._base_path = base.path or "/"
        self._origin = _origin(base)
        self._authenticator = authenticator
        self._secrets = tuple({authenticator, quote(authenticator, safe="")})
        self._timeout = timeout
        self._pool = _connection_pool(base, timeout, max_connections)
        self._max_attempts = max_attempts
        self._interrupted = threading.Event()
        self._sleep = sleep if sleep is not None else self._interrupted.wait
        self._max_download_bytes = max_download_bytes
        self._backoff = backoff or Backoff(initial=0.2, cap=10.0, jitter=1.0)
        self._observers: tuple[CallObserver, ...] = ()

    @property
    def base_url(self) -> str:
        """The API root every endpoint path is appended to (ends with ``/``)."""
        return self._base_url

    def __repr__(self) -> str:
        return f"CEClient(base_url={self._base_url!r}, authenticator={_REDACTED})"

    def add_observer(self, observer: CallObserver) -> Callable[[], None]:
        """Call ``observer`` after every API call from now on (see :data:`CallObserver`).

        Returns:
            A function that removes the observer again.
        """
        self._observers = (*self._observers, observer)

        def remove() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return remove

    def interrupt(self) -> None:
        """Stop retrying, for a shutdown: a backoff wait ends now, a call that would try again
        raises :class:`~bridge.errors.RemoteTransient` instead, and so does a download at its
        next chunk (an API call already on the wire still runs to its answer or its timeout).
        Irreversible; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the connections to CE, for good: a later call raises
        :class:`~bridge.errors.RemoteTransient` at once, and a call waiting to retry stops
        (as after :meth:`interrupt`). Safe to call twice."""
        self._interrupted.set()
        self._pool.close()

    # -- API ---------------------------------------------------------------------------------

    def create_job(self, req: CEJobRequest, idempotency_key: str) -> str:
        """Create a remote job, or find the one already created under ``idempotency_key``.

        Args:
            req: The job, in CE's terms.
            idempotency_key: The ``Idempotency-Key`` header value (see
                :func:`~bridge.remote.convention.idempotency_key`); every retry sends the same.

        Returns:
            CE's remote job id.

        Raises:
            RemoteRejected: CE refused the job (a 4xx; the message is CE's).
            RemoteAuthError: The authenticator is missing or unknown.
            RemoteTransient: CE stayed unreachable or faulty for the whole retry budget.
        """
        if not idempotency_key:
            raise ValueError("an Idempotency-Key is required: creation is retried")
        job_id = self._call(
            "job-create",
            JOB_CREATE_PATH,
            req.to_body(self._authenticator),
            parse_create_response,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        log.debug("created remote job %s (%s: %s)", job_id, IDEMPOTENCY_HEADER, idempotency_key)
        return job_id

    def job_status(self, remote_job_id: str) -> RemoteJobStatus:
        """Return a remote job's current status (with output files once Completed).

        Raises:
            RemoteRejected: CE does not know the job (or another 4xx).
            RemoteAuthError: The authenticator is missing or unknown.
            RemoteTransient: No well-formed answer about this job within the retry budget.
        """

        def parse(body: object) -> RemoteJobStatus:
            status = RemoteJobStatus.from_response(body)
            if status.remote_job_id != remote_job_id:
                raise RemoteTransient("job-status: the answer is about another job")
            return status

        status = self._call(
            "job-status", JOB_STATUS_PATH, job_ref_body(self._authenticator, remote_job_id), parse
        )
        log.debug("remote job %s is %s", remote_job_id, status.status)
        return status

    def cancel_job(self, remote_job_id: str) -> CEStatus:
        """Ask CE to abort a remote job.

        Returns:
            The job's status after the request: Aborted, or the terminal status it had already
            reached (cancelling a finished job is not an error).

        Raises:
            RemoteRejected: CE does not know the job (or another 4xx).
            RemoteAuthError: The authenticator is missing or unknown.
            RemoteTransient: No well-formed answer within the retry budget.
        """

        def parse(body: object) -> CEStatus:
            job_id, status = parse_cancel_response(body)
            if job_id != remote_job_id:
                raise RemoteTransient("job-cancel: the answer is about another job")
            return status

        status = self._call(
            "job-cancel", JOB_CANCEL_PATH, job_ref_body(self._authenticator, remote_job_id), parse
        )
        log.info("cancel of remote job %s answered %s", remote_job_id, status)
        return status

    def download(self, url: str) -> bytes:
        """Fetch one output file from the CE host.

        Args:
            url: An output file URL from :meth:`job_status`.

        Returns:
            The file's bytes, at most ``max_download_bytes`` of them (held in memory: for small
            files; the worker streams with :meth:`download_into`, which this wraps).

        Raises:
            OutputTooLarge: The file is over the cap (declared, or while streaming).
            DownloadRefused: The URL's scheme, host or port differ from the base URL's, the
                server redirects or sends a compressed body.
            RemoteRejected: A 4xx (e.g. the file does not exist).
            RemoteTransient: No complete answer within the retry budget.
        """
        sink = _MemorySink()
        self.download_into(url, sink)
        return b"".join(sink.chunks)

    @contextmanager
    def _open_download(self, target: Url, cap: int) -> Iterator[http.client.HTTPResponse]:
        """One GET of an output file, streamed as sent (no decompression, no redirects),
        transport errors translated, the answer checked against ``cap`` before its body."""
        with self._exchange("download", "GET", target.request_uri, None, _ACCEPT) as resp:
            self._check_download(resp, cap)
            yield resp

    @contextmanager
    def _exchange(
        self,
        op: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Iterator[http.client.HTTPResponse]:
        """One request to the CE origin; yields the answer with its body unread.

        Transport failures while sending become RemoteTransient (quoting no request data); the
        block reads the body through ``_reading``, which translates them the same way. On
        leaving, a connection whose body was read to its end is back in the pool; one left
        mid-body (refused, over a cap) is closed, never reused with unread bytes in it.
        """
        with self._reading(op):
            answer = self._pool.send(method, path, body, headers)
        try:
            yield answer.response
        finally:
            self._pool.finish(answer)

    def _reading(self, op: str) -> AbstractContextManager[None]:
        """Translates the transport's failures in the block into RemoteTransient."""
        return _transport_errors(op, self._timeout, self._redact)

    def download_into(self, url: str, sink: DownloadSink, max_bytes: int | None = None) -> int:
        """Stream one output file from the CE host into ``sink``, never holding it in memory.

        The same checks as :meth:`download`. A retried attempt calls ``sink.restart()`` first,
        so ``sink`` receives exactly one whole copy of the file, chunk by chunk.

        Args:
            url: An output file URL from :meth:`job_status`.
            sink: Where the bytes go (``bridge.outputs.PartialFile`` hashes them to disk).
            max_bytes: The cap for this file (default ``max_download_bytes``).

        Returns:
            The file's size in bytes.

        Raises:
            OutputTooLarge: The file is over the cap (declared, or while streaming).
            DownloadRefused: Off-host URL, a redirect or a compressed body.
            RemoteRejected: A 4xx (e.g. the file does not exist).
            RemoteTransient: No complete answer within the retry budget.
        """
        target = self._download_target(url)
        cap = self._max_download_bytes if max_bytes is None else max_bytes
        started = False

        def once() -> int:
            nonlocal started
            if started:
                sink.restart()
            started = True
            with self._open_download(target, cap) as resp:
                total = 0
                # read1: each piece as it arrives (read() would wait for a whole chunk), so a
                # slow download sees the interrupt between pieces. The sink's own errors (a
                # full disk) pass through as they are: only the reads are the transport's.
                while chunk := self._read_piece(resp):
                    if self._interrupted.is_set():
                        # A shutdown does not wait for a long download: the next start
                        # fetches the file again from its start.
                        raise RemoteTransient("download: interrupted (the bridge is stopping)")
                    total += len(chunk)
                    if total > cap:
                        raise OutputTooLarge(f"download: the file is over the {cap}-byte cap")
                    sink.write(chunk)
                return total

        size = self._retrying("download", once, self._max_attempts)
        log.debug("streamed %d bytes from %s", size, _origin_text(target))
        return size

    def _read_piece(self, resp: http.client.HTTPResponse) -> bytes:
        """The next piece of a download's body as it arrives (b"" at its end).

        Raises:
            RemoteTransient: the transport failed, or the connection ended before the
                declared length (``read1`` itself says nothing of it).
        """
        with self._reading("download"):
            piece = resp.read1(_STREAM_CHUNK)
            if not piece and resp.length:
                raise http.client.IncompleteRead(b"", resp.length)
            return piece

    def _download_target(self, url: str) -> Url:
        try:
            target = parse_url(url)
        except LocationParseError as exc:
            raise DownloadRefused("refusing to download: not a valid URL") from exc
        if _origin(target) != self._origin:
            raise DownloadRefused(
                f"refusing to download from {self._redact(_origin_text(target))}: "
                f"output files are fetched only from {_origin_text(parse_url(self._base_url))}"
            )
        return target

    def _check_download(self, resp: http.client.HTTPResponse, cap: int) -> None:
        """Refuses an error answer, a redirect, an encoded body or a declared size over cap."""
        code = resp.status
        if not 200 <= code < 300:
            with self._reading("download"):
                body = _read_capped(resp, _ERROR_BODY_CAP)
            if 300 <= code < 400 and "Location" in resp.headers:
                raise DownloadRefused(f"download: refusing to follow a redirect (HTTP {code})")
            self._raise_for_status("download", code, resp.headers, body)
        if _encoded(resp):
            raise DownloadRefused("download: refusing a compressed body")
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise OutputTooLarge(f"download: the file is over the {cap}-byte cap")

    def ping(self) -> None:
        """Check, in one attempt and without retries, that CE answers and accepts the account.

        It asks for the status of a job that does not exist: a CE-style ``{"error": ...}`` 4xx
        answer (or any 2xx) means the API is reachable.

        Raises:
            RemoteAuthError: The authenticator is missing or unknown.
            RemoteTransient: CE is unreachable, timed out, or answered 429/5xx.
            RemoteRejected: The answer is not CE's (a 4xx without an ``error`` body, or a 3xx):
                the base URL is probably wrong.
        """
        with self._observed("ping"):
            body = job_ref_body(self._authenticator, _PING_JOB_ID)
            code, headers, content = self._post("ping", JOB_STATUS_PATH, body)
            if code in (401, 429) or code >= 500:
                self._raise_for_status("ping", code, headers, content)
            if 200 <= code < 300:
                return
            if 400 <= code < 500 and content is not None and error_message(content) is not None:
                return
            raise RemoteRejected(
                f"ping: HTTP {code} is not a CE API answer; check the base URL", code
            )

    # -- internals ---------------------------------------------------------------------------

    def _call(
        self,
        op: str,
        path: str,
        body: Mapping[str, Any],
        parse: Callable[[object], T],
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """POST ``body`` to ``path`` with retries; return the parsed JSON answer."""

        def once() -> T:
            code, answer_headers, content = self._post(op, path, body, headers)
            self._raise_for_status(op, code, answer_headers, content)
            if content is None:
                raise RemoteTransient(f"{op}: the answer is over the {_ANSWER_CAP}-byte cap")
            try:
                data = json.loads(content)
            except ValueError as exc:  # UnicodeDecodeError included
                raise RemoteTransient(f"{op}: malformed JSON body (HTTP {code})") from exc
            return parse(data)

        return self._retrying(op, once, self._max_attempts)

    def _post(
        self,
        op: str,
        path: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes | None]:
        """Send one POST; return the status, the headers and the body (None if over its cap:
        :data:`_ANSWER_CAP`, or :data:`_ERROR_BODY_CAP` for an error).

        Transport failures become RemoteTransient (never quoting the body); so does a
        compressed 2xx answer (asked for ``identity``, never inflated). A compressed error
        answer is taken without its body.
        """
        data = json.dumps(body, separators=(",", ":")).encode()
        all_headers = _POST_HEADERS if headers is None else {**_POST_HEADERS, **headers}
        with self._exchange(op, "POST", self._base_path + path, data, all_headers) as resp:
            code = resp.status
            success = 200 <= code < 300
            if _encoded(resp):
                if success:
                    raise RemoteTransient(f"{op}: refusing a compressed body (HTTP {code})")
                content = None
            else:
                with self._reading(op):
                    content = _read_capped(resp, _ANSWER_CAP if success else _ERROR_BODY_CAP)
        log.debug("%s: HTTP %d", op, code)
        return code, resp.headers, content

    def _raise_for_status(
        self, op: str, code: int, headers: http.client.HTTPMessage, body: bytes | None
    ) -> None:
        """Return on 2xx; otherwise raise the error the status means."""
        if 200 <= code < 300:
            return
        message = self._server_message(body)
        if code == 429 or code >= 500:
            retry_after = _parse_retry_after(headers.get("Retry-After"))
            detail = f": {message}" if message else ""
            raise RemoteTransient(f"{op}: HTTP {code}{detail}", retry_after=retry_after)
        if code == 401:
            raise RemoteAuthError(message or "the CE authenticator is missing or unknown", code)
        if 400 <= code < 500:
            raise RemoteRejected(message or f"{op}: HTTP {code}", code)
        raise RemoteRejected(f"{op}: unexpected HTTP {code}", code)

    @contextmanager
    def _observed(self, op: str) -> Iterator[None]:
        """Times the block and reports it to the observers (with the RemoteError it raised)."""
        started = time.perf_counter()
        error: RemoteError | None = None
        try:
            yield
        except RemoteError as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            for observer in self._observers:
                try:
                    observer(op, elapsed, error)
                except Exception:  # an observer's bug must not break the call
                    log.exception("CE call observer failed for %s", op)

    def _retrying(self, op: str, once: Callable[[], T], attempts: int) -> T:
        """Run ``once`` until it does not raise RemoteTransient, within ``attempts`` tries."""
        with self._observed(op):
            return self._retry_loop(op, once, attempts)

    def _retry_loop(self, op: str, once: Callable[[], T], attempts: int) -> T:
        last: RemoteTransient | None = None
        for attempt in range(1, attempts + 1):
            try:
                return once()
            except RemoteTransient as exc:
                last = exc
            if attempt == attempts:
                break
            if self._interrupted.is_set():
                raise RemoteTransient(f"{op}: not retried, the client is stopping") from last
            delay = self._backoff.delay(attempt - 1)
            if last.retry_after is not None:
                if last.retry_after > self._backoff.cap:
                    log.warning(
                        "%s: server asked to retry after %.3gs, longer than the backoff's cap: "
                        "returning the failure to the caller",
                        op,
                        last.retry_after,
                    )
                    raise RemoteTransient(
                        f"{op}: server asked to retry after {last.retry_after:g}s",
                        retry_after=last.retry_after,
                    ) from last
                delay = max(delay, last.retry_after)
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.3fs",
                op,
                attempt,
                attempts,
                last,
                delay,
            )
            self._sleep(delay)
            if self._interrupted.is_set():
                raise RemoteTransient(f"{op}: not retried, the client is stopping") from last
        assert last is not None  # the loop ran at least once and only breaks after a failure
        log.warning("%s: giving up after %d attempts: %s", op, attempts, last)
        raise RemoteTransient(
            f"{op}: gave up after {attempts} attempts: {last}", retry_after=last.retry_after
        ) from last

    def _server_message(self, body: bytes | None) -> str | None:
        """CE's ``{"error": ...}`` message from ``body``, redacted, on one line, shortened."""
        if body is None:
            return None
        message = error_message(body)
        if message is None:
            return None
        message = " ".join(self._redact(message).split())
        return message if len(message) <= _MESSAGE_CAP else message[: _MESSAGE_CAP - 3] + "..."

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


class DownloadSink(Protocol):
    """Where :meth:`CEClient.download_into` streams a file."""

    def write(self, chunk: bytes) -> None:
        """Receives the next chunk."""

    def restart(self) -> None:
        """Forgets every chunk received (the download starts over)."""


class _MemorySink:
    """A :class:`DownloadSink` that keeps the file's chunks in memory (``CEClient.download``)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def restart(self) -> None:
        self.chunks.clear()


@contextmanager
def _transport_errors(op: str, timeout: float, redact: Callable[[str], str]) -> Iterator[None]:
    """Translate the transport's failures in the block (a request sent, or a body read) into
    RemoteTransient, quoting no request data: the socket's, TLS's and http.client's errors.
    Only reads and sends run in such a block, so no other error is mistaken for one."""
    try:
        yield
    except PoolClosed as exc:
        raise RemoteTransient(f"{op}: the client is closed") from exc
    except TimeoutError as exc:
        raise RemoteTransient(f"{op}: timed out after {timeout:g}s") from exc
    except (ConnectionRefusedError, socket.gaierror) as exc:
        detail = redact(str(exc))[:_MESSAGE_CAP]
        raise RemoteTransient(f"{op}: cannot connect: {detail}") from exc
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        detail = redact(str(exc))[:_MESSAGE_CAP]
        raise RemoteTransient(f"{op}: {type(exc).__name__}: {detail}") from exc


def _parse_base_url(base_url: str) -> Url:
    """The base URL, normalised (lower-case scheme and host) and ending with ``/``."""
    try:
        url = parse_url(base_url)
    except LocationParseError as exc:
        raise ConfigError("the CE base URL is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError("the CE base URL must be an http(s) URL with a host")
    if url.query is not None or url.fragment is not None:
        raise ConfigError("the CE base URL must not have a query or fragment")
    if url.auth is not None:  # it would end up in logs and messages that quote the URL
        raise ConfigError("the CE base URL must not carry credentials")
    path = url.path or "/"
    return url._replace(path=path if path.endswith("/") else path + "/")


def _connection_pool(base: Url, timeout: float, size: int) -> ConnectionPool:
    """Up to ``size`` kept-alive connections to the base URL's origin."""
    assert base.host is not None  # checked by _parse_base_url
    https = base.scheme == "https"
    # certifi's CA bundle, as httpx and urllib3 used here: the same trust whatever the host's
    # CA store; certificate and host name verified (the default context's rules).
    context = ssl.create_default_context(cafile=certifi.where()) if https else None
    # No silent resend (resend=False): a job-create CE may have acted on must go through the
    # client's own counted retries (the same Idempotency-Key), which know what was sent.
    return ConnectionPool(
        base.host, base.port, https=https, timeout=timeout, context=context, max_idle=size
    )


def _origin(url: Url) -> tuple[str, str, int | None]:
    scheme = (url.scheme or "").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = url.port if url.port is not None else default
    return (scheme, (url.host or "").lower(), port)


def _origin_text(url: Url) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def _encoded(resp: http.client.HTTPResponse) -> bool:
    """Whether the body is sent encoded (compressed): never inflated here, so refused."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    return encoding not in ("", "identity")


def _read_capped(resp: http.client.HTTPResponse, cap: int) -> bytes | None:
    """Read a body as sent (never decompressed); None if it is over ``cap``.

    A declared length over ``cap`` is refused before any read; a body of no declared length
    (chunked, or ended by the close) is read in pieces and refused as soon as it exceeds
    ``cap``. Callers refuse encoded bodies where they use them, so nothing is inflated.
    """
    declared = resp.length
    if declared is not None:
        return resp.read() if declared <= cap else None
    chunks: list[bytes] = []
    total = 0
    while chunk := resp.read1(_STREAM_CHUNK):
        total += len(chunk)
        if total > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds, decimals, or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)

"""Synchronous client for Charity Engine's Remote API (the bridge process is sync + threads).

What it guarantees:

- **The authenticator stays secret.** It is sent only in request bodies to the configured base
  URL. It never appears in an exception message, a log line or the client's ``repr``: request
  bodies are never put in errors or logs, and text taken from a server's answer is redacted
  before use.
- **Transient failures are retried, permanent ones are not.** HTTP 5xx and 429, timeouts,
  connection errors and malformed bodies are retried up to ``max_attempts`` times with
  exponential backoff and full jitter; a ``Retry-After`` is honoured (the wait is at least that
  long). A ``Retry-After`` longer than ``backoff_max`` is not slept through: the call raises
  :class:`~bridge.errors.RemoteTransient` at once with ``retry_after`` set, so the caller
  reschedules instead of blocking a thread. When the budget is spent the call raises
  :class:`~bridge.errors.RemoteTransient`. A 401 raises :class:`~bridge.errors.RemoteAuthError`
  and any other 4xx :class:`~bridge.errors.RemoteRejected` with CE's message, immediately.
- **Creation is idempotent on the wire.** ``job-create`` always carries an ``Idempotency-Key``,
  so its retries cannot create a second job on a server that honours the header.
- **Downloads are confined.** Only URLs with the base URL's scheme, host and port are fetched,
  redirects are never followed, and a body over ``max_download_bytes`` is refused while
  streaming, so no more than the cap (plus one network chunk) is ever held in memory.

Every assumption about CE's paths and bodies comes from :mod:`bridge.remote.convention`.
One :class:`CEClient` may be shared by several threads.

**Observable.** :meth:`CEClient.add_observer` registers a :data:`CallObserver`, called after each
API call (its retries included) with the call's name, its wall time and the error it raised; the
bridge's ``/metrics`` uses it for CE latency and errors by kind. An observer that raises is
logged and ignored: metrics never break a call.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import quote

import httpx

from bridge.errors import (
    ConfigError,
    DownloadRefused,
    OutputTooLarge,
    RemoteAuthError,
    RemoteError,
    RemoteRejected,
    RemoteTransient,
)
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
_MESSAGE_CAP: Final = 500  # characters of a server message kept in an exception
_REDACTED: Final = "[REDACTED]"
_PING_JOB_ID: Final = "ce-bridge-readiness-probe"
#: Connections to CE: more kept alive than the worker has steps in flight
#: (``bridge.engine.worker.WORKER_THREADS``), so that none is closed and opened again per call.
_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=64)

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
        http: The ``httpx.Client`` to send with (tests may pass one with a ``MockTransport``);
            by default the client makes and owns one.
        timeout: Seconds allowed for each HTTP attempt (connect, read, write, pool).
        max_attempts: Attempts per call, the first included (at least 1).
        backoff_base: The first retry's maximum delay in seconds; it doubles per attempt.
        backoff_max: The longest delay slept between two attempts.
        sleep: Called with each delay; tests inject a recorder. By default the delay is an
            interruptible wait that :meth:`interrupt` ends.
        max_download_bytes: The largest output file :meth:`download` accepts.

    Raises:
        ConfigError: An empty authenticator, a base URL that is not http(s) with a host, or
            nonsensical retry settings.
    """

    def __init__(
        self,
        base_url: str,
        authenticator: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        sleep: Callable[[float], None] | None = None,
        max_download_bytes: int = 64 * MIB,
    ) -> None:
        if not authenticator:
            raise ConfigError("the CE authenticator is empty")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if timeout <= 0 or backoff_base < 0 or backoff_max < 0 or max_download_bytes < 0:
            raise ConfigError("timeout must be positive; backoffs and download cap non-negative")
        self._base_url = _normalise_base_url(base_url)
        self._origin = _origin(httpx.URL(self._base_url))
        self._authenticator = authenticator
        self._secrets = tuple({authenticator, quote(authenticator, safe="")})
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout, limits=_LIMITS)
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._interrupted = threading.Event()
        self._sleep = sleep if sleep is not None else self._interrupted.wait
        self._max_download_bytes = max_download_bytes
        self._rng = random.Random()
        self._backoff = Backoff(
            initial=backoff_base,
            cap=backoff_max,
            jitter=1.0,
            rng=lambda: self._rng.uniform(0.0, 1.0),
        )
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
        """Stop retrying, for a shutdown: a backoff wait ends now, and a call that would try
        again raises :class:`~bridge.errors.RemoteTransient` instead (an attempt already on the
        wire still runs to its answer or its timeout). Irreversible; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the underlying ``httpx.Client`` if this client created it."""
        if self._owns_http:
            self._http.close()

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
        log.info("created remote job %s (%s: %s)", job_id, IDEMPOTENCY_HEADER, idempotency_key)
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
            The file's bytes, at most ``max_download_bytes`` of them.

        Raises:
            DownloadRefused: The URL's scheme, host or port differ from the base URL's, the
                server redirects or sends a compressed body, or the file is over the cap.
            RemoteRejected: A 4xx (e.g. the file does not exist).
            RemoteTransient: No complete answer within the retry budget.
        """
        target = self._download_target(url)
        cap = self._max_download_bytes

        def once() -> bytes:
            with self._open_download(target, cap) as resp:
                data = _read_capped(resp, cap)
                if data is None:
                    raise OutputTooLarge(f"download: the file is over the {cap}-byte cap")
                return data

        data = self._retrying("download", once, self._max_attempts)
        log.debug("downloaded %d bytes from %s", len(data), _origin_text(target))
        return data

    @contextmanager
    def _open_download(self, target: httpx.URL, cap: int) -> Iterator[httpx.Response]:
        """One GET of an output file, streamed as sent (no decompression, no redirects),
        transport errors translated, the answer checked against ``cap`` before its body."""
        with (
            _transport_errors("download", self._timeout, self._redact),
            self._http.stream(
                "GET",
                target,
                headers={"Accept-Encoding": "identity"},
                timeout=self._timeout,
                follow_redirects=False,
            ) as resp,
        ):
            self._check_download(resp, cap)
            yield resp

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
                for chunk in resp.iter_raw(_STREAM_CHUNK):
                    total += len(chunk)
                    if total > cap:
                        raise OutputTooLarge(f"download: the file is over the {cap}-byte cap")
                    sink.write(chunk)
                return total

        size = self._retrying("download", once, self._max_attempts)
        log.debug("streamed %d bytes from %s", size, _origin_text(target))
        return size

    def _download_target(self, url: str) -> httpx.URL:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise DownloadRefused("refusing to download: not a valid URL") from exc
        if _origin(target) != self._origin:
            raise DownloadRefused(
                f"refusing to download from {self._redact(_origin_text(target))}: "
                f"output files are fetched only from {_origin_text(httpx.URL(self._base_url))}"
            )
        return target

    def _check_download(self, resp: httpx.Response, cap: int) -> None:
        """Refuses an error answer, a redirect, an encoded body or a declared size over cap."""
        if not resp.is_success:
            body = _read_capped(resp, _ERROR_BODY_CAP)
            if resp.is_redirect:
                raise DownloadRefused(
                    f"download: refusing to follow a redirect (HTTP {resp.status_code})"
                )
            self._raise_for_status("download", resp.status_code, resp.headers, body)
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
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
            resp = self._post("ping", JOB_STATUS_PATH, body)
            code = resp.status_code
            if code in (401, 429) or code >= 500:
                self._raise_for_status("ping", code, resp.headers, resp.content)
            if resp.is_success or (400 <= code < 500 and error_message(resp.content) is not None):
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
            resp = self._post(op, path, body, headers)
            self._raise_for_status(op, resp.status_code, resp.headers, resp.content)
            try:
                data = resp.json()
            except ValueError as exc:
                raise RemoteTransient(
                    f"{op}: malformed JSON body (HTTP {resp.status_code})"
                ) from exc
            return parse(data)

        return self._retrying(op, once, self._max_attempts)

    def _post(
        self,
        op: str,
        path: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one POST; transport failures become RemoteTransient (never quoting the body)."""
        with _transport_errors(op, self._timeout, self._redact):
            resp = self._http.post(
                self._base_url + path,
                json=body,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
            )
        log.debug("%s: HTTP %d", op, resp.status_code)
        return resp

    def _raise_for_status(
        self, op: str, code: int, headers: httpx.Headers, body: bytes | None
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
            delay = self._backoff.delay(attempt - 1)  # full jitter
            if last.retry_after is not None:
                if last.retry_after > self._backoff_max:
                    log.warning(
                        "%s: server asked to retry after %.3gs, longer than backoff_max: "
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


@contextmanager
def _transport_errors(op: str, timeout: float, redact: Callable[[str], str]) -> Iterator[None]:
    """Translate httpx transport failures into RemoteTransient, quoting no request data."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RemoteTransient(f"{op}: timed out after {timeout:g}s") from exc
    except httpx.RequestError as exc:
        detail = redact(str(exc))[:_MESSAGE_CAP]
        raise RemoteTransient(f"{op}: {type(exc).__name__}: {detail}") from exc


def _normalise_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError("the CE base URL is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError("the CE base URL must be an http(s) URL with a host")
    if url.query or url.fragment:
        raise ConfigError("the CE base URL must not have a query or fragment")
    text = str(url)
    return text if text.endswith("/") else text + "/"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), url.port if url.port is not None else default)


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def _read_capped(resp: httpx.Response, cap: int) -> bytes | None:
    """Read a streamed body; None as soon as it exceeds ``cap``.

    Callers ask for ``Accept-Encoding: identity`` and refuse encoded bodies, so chunks are not
    inflated by decompression.
    """
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_bytes():
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

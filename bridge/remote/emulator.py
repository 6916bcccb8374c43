"""A Charity Engine Remote API emulator (FastAPI), for the demo and the tests.

It serves the convention of :mod:`bridge.remote.convention` under ``/remotejobs/v2/``:
``job-create`` (validating the body as CE would, honouring ``Idempotency-Key``), ``job-status``,
``job-cancel`` and ``files/{jobId}/{path}`` for output files. What it guarantees:

- **It never executes a submitted command line.** A job's outputs are deterministic stand-ins:
  ``out.txt`` holds the sha256 of ``app``, ``commandLine`` and the remote job id, and
  ``meta/spec.json`` the job's request without the authenticator.
- **Time, not threads, moves jobs.** A job's status is computed from its creation time and the
  phase durations fixed when it was created: Provisioning -> Downloading -> Running ->
  Completed (or Failed for ``fail_apps`` / ``fail_commands``; never past Running for
  ``never_finish_apps``; Aborted once cancelled before the end).
- **An outage can be aimed at one app.** ``job-create`` for an app in ``error_apps`` answers 503
  every time and creates nothing (a job whose creation keeps failing past any retry budget).
- **Faults are injected in front of the API, from a seeded RNG.** On ``/remotejobs/v2/`` only
  (never ``/_emulator/``): 500/503 (``error_rate``, not processed), 429 with ``Retry-After``
  (``rate_limit_rate``, not processed), a hang of ``timeout_seconds`` before processing
  (``timeout_rate``), and a 200 with a broken JSON body after processing (``malformed_rate``;
  not applied to file downloads, whose bodies are not JSON).
- **Every count is kept** for ``GET /_emulator/stats``: ``{"create_calls", "jobs", "by_key":
  {"<Idempotency-Key>": {"calls", "jobs", "remoteJobIds"}}, "max_in_flight"}``, counting every
  authenticated ``job-create`` that reached the API (creates without the header count in the
  totals only); ``max_in_flight`` is the most API requests (file downloads included) it was
  answering at once.
- **A remote server's latency can be emulated:** every API request waits ``answer_delay``
  seconds before it is handled, side by side with the others (an ``asyncio`` sleep, never a
  queue), so a client with N calls in flight gets at most N answers per ``answer_delay``.
- **Authenticators are never echoed**: not in responses, inspection endpoints, logs or the
  config's ``repr``.
- State sits behind one lock, so the app is safe to call from several threads.

:func:`create_lean_emulator_app` serves the same :class:`Emulator` as a bare ASGI app for the
benchmarks: the same answers and stats, no fault injection, output files held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.types import Receive, Scope, Send

from bridge.errors import SpecError
from bridge.jobdoc import CreateBody, describe
from bridge.remote.convention import (
    F_APP,
    F_AUTHENTICATOR,
    F_COMMAND_LINE,
    F_ERROR,
    F_JOB_ID,
    F_STATUS,
    IDEMPOTENCY_HEADER,
    JOB_CANCEL_PATH,
    JOB_CREATE_PATH,
    JOB_STATUS_PATH,
    CEStatus,
    OutputFile,
    RemoteJobStatus,
    is_terminal,
)
from bridge.results import safe_relative_path

log = logging.getLogger("bridge.remote.emulator")

API_PREFIX: Final = "/remotejobs/v2/"
FILES_PATH: Final = "files"
"""Output file URLs are ``{base}files/{jobId}/{path relative to output/}`` (an emulator detail:
CE's own URLs are whatever its ``job-status`` says)."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]

_FIXED_AT_START: Final = frozenset({"authenticators", "data_dir"})
_MALFORMED_BODY: Final = b'{"jobId": "truncated'


class EmulatorConfig(BaseModel):
    """How the emulator behaves. All but ``authenticators`` and ``data_dir`` can be changed at
    run time with ``POST /_emulator/config``; a job keeps the timings and outcome it was
    created with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    authenticators: frozenset[str] = Field(default=frozenset(), repr=False)
    """Accepted authenticators; empty accepts any non-empty one."""
    provisioning_seconds: Seconds = 0.5
    downloading_seconds: Seconds = 0.5
    running_seconds: Seconds = 1.0
    data_dir: Path | None = None
    """Where output files are written (``<data_dir>/<jobId>/output/...``); None: a new
    temporary directory."""
    public_base_url: str | None = None
    """The ``.../remotejobs/v2/`` URL put in output file URLs; None: the URL the request
    came in on."""
    error_rate: Rate = 0.0
    rate_limit_rate: Rate = 0.0
    retry_after: Seconds = 1.0
    """``Retry-After`` of an injected 429, in seconds (fractions allowed, for tests)."""
    timeout_rate: Rate = 0.0
    timeout_seconds: Seconds = 30.0
    malformed_rate: Rate = 0.0
    fail_apps: frozenset[str] = frozenset()
    fail_commands: frozenset[str] = frozenset()
    reject_apps: frozenset[str] = frozenset()
    never_finish_apps: frozenset[str] = frozenset()
    error_apps: frozenset[str] = frozenset()
    """``job-create`` for these apps always answers 503 and creates nothing."""
    answer_delay: Seconds = 0.0
    """Seconds every API request (file downloads included) waits before it is handled: the
    latency of a server far away. Requests wait side by side, not in turn."""
    honour_idempotency_key: bool = True
    """False emulates a server that ignores ``Idempotency-Key`` (each create is a new job)."""
    seed: int | None = None
    """Seed of the fault RNG (None: unpredictable)."""

    def fault_rates(self) -> tuple[tuple[Fault, float], ...]:
        """Each injected fault with its rate, in the order a request's draw tries them."""
        return (
            ("error", self.error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("timeout", self.timeout_rate),
            ("malformed", self.malformed_rate),
        )

    @model_validator(mode="after")
    def _rates_fit(self) -> EmulatorConfig:
        if sum(rate for _, rate in self.fault_rates()) > 1.0 + 1e-9:
            raise ValueError("error, rate-limit, timeout and malformed rates must sum to <= 1")
        return self

    def public_dump(self) -> dict[str, Any]:
        """The settings as JSON, without the authenticators."""
        return self.model_dump(mode="json", exclude={"authenticators"})


class _ApiError(Exception):
    """An error answer: ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Outcome = Literal["complete", "fail", "never"]
Fault = Literal["error", "rate_limit", "timeout", "malformed"]


@dataclass
class _Job:
    remote_id: str
    owner: str = field(repr=False)
    request: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    phases: tuple[float, float, float]
    outcome: Outcome
    failure: str | None
    cancelled: bool = False
    outputs: tuple[str, ...] = ()
    generated: dict[str, int] = field(default_factory=dict)  # path -> size, never on disk
    held: dict[str, bytes] = field(default_factory=dict, repr=False)  # path -> content, in memory
    outputs_unavailable: bool = False
    slow_outputs: float = 0.0  # seconds each output file's answer is spread over

    def status_at(self, now: float) -> CEStatus:
        if self.cancelled:
            return CEStatus.ABORTED
        elapsed = now - self.created_at
        provisioning, downloading, running = self.phases
        if elapsed < provisioning:
            return CEStatus.PROVISIONING
        if elapsed < provisioning + downloading:
            return CEStatus.DOWNLOADING
        if self.outcome == "never" or elapsed < provisioning + downloading + running:
            return CEStatus.RUNNING
        return CEStatus.FAILED if self.outcome == "fail" else CEStatus.COMPLETED


#: Command-line directives the emulator honours (it never runs the command; these only shape
#: the stand-in result, for tests of hostile or large jobs):
#: ``ce-emulator:outputs=COUNTxBYTES`` adds COUNT generated files ``big/NNNNNN.bin`` of BYTES
#: each (deterministic, streamed in chunks, never held or written whole);
#: ``ce-emulator:fail-message=BYTES`` makes the job fail with a message of BYTES bytes;
#: ``ce-emulator:outputs-unavailable`` makes every output download answer 503;
#: ``ce-emulator:slow-outputs=SECONDS`` spreads each output file's answer evenly over SECONDS
#: (``_paced``): a slow file server, or a huge file.
_DIRECTIVE = re.compile(r"ce-emulator:([a-z-]+)(?:=([0-9x]+))?")
_CHUNK = 1024 * 1024
#: Most generated bytes or files one job may ask for (the emulator streams them; a bound keeps a
#: typo from asking for petabytes).
MAX_GENERATED_BYTES = 64 * 1024**3
MAX_GENERATED_FILES = 100_000
#: Longest ``slow-outputs`` a job may ask for, and the pause between the pieces of its answers.
MAX_SLOW_OUTPUTS = 3600
_PACE_STEP = 0.25


@dataclass(frozen=True)
class Directives:
    """What a command line's ``ce-emulator:`` directives ask for."""

    generated: tuple[tuple[str, int], ...] = ()
    fail_message_bytes: int | None = None
    outputs_unavailable: bool = False
    slow_outputs: int = 0


def parse_directives(command: str) -> Directives:
    """The ``ce-emulator:`` directives in ``command`` (unknown or malformed ones are ignored)."""
    generated: list[tuple[str, int]] = []
    fail_bytes: int | None = None
    unavailable = False
    slow = 0
    for name, value in _DIRECTIVE.findall(command):
        if name == "outputs" and re.fullmatch(r"[0-9]+x[0-9]+", value):
            count, size = (int(v) for v in value.split("x"))
            if count <= MAX_GENERATED_FILES and count * size <= MAX_GENERATED_BYTES:
                generated += [(f"big/{i:06d}.bin", size) for i in range(count)]
        elif name == "fail-message" and value.isdigit():
            fail_bytes = min(int(value), 16 * 1024 * 1024)
        elif name == "outputs-unavailable":
            unavailable = True
        elif name == "slow-outputs" and value.isdigit():
            slow = min(int(value), MAX_SLOW_OUTPUTS)
    return Directives(tuple(generated), fail_bytes, unavailable, slow)


def _long_message(size: int) -> str:
    unit = "the job failed (emulated failure with a long message); "
    return (unit * (size // len(unit) + 1))[:size]


def generated_seed(remote_id: str, path: str) -> bytes:
    """The 1 MiB block a generated file repeats (its last chunk cut to size)."""
    digest = hashlib.sha256(f"{remote_id}/{path}".encode()).digest()
    return (digest * (_CHUNK // len(digest) + 1))[:_CHUNK]


def generated_chunks(seed: bytes, size: int) -> Iterator[bytes]:
    """The content of a generated file of ``size`` bytes, chunk by chunk."""
    left = size
    view = memoryview(seed)
    while left > 0:
        n = min(left, len(seed))
        yield bytes(view[:n])
        left -= n


def generated_sha256(remote_id: str, path: str, size: int) -> str:
    """The hex sha256 of a generated file, computed by streaming it (for tests)."""
    digest = hashlib.sha256()
    for chunk in generated_chunks(generated_seed(remote_id, path), size):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class GeneratedFile:
    """An output file the emulator streams instead of storing: ``size`` bytes from ``seed``."""

    seed: bytes
    size: int


@dataclass
class _KeyRecord:
    fingerprint: str | None = None  # of the request that created the key's job
    calls: int = 0
    remote_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputAnswer:
    """What a download of an output file answers: its content (or the recipe of a generated
    one, to be streamed) and the seconds the answer is spread over (``slow-outputs``)."""

    content: bytes | GeneratedFile
    seconds: float = 0.0


class Emulator:
    """The emulator's state and operations, independent of HTTP (the app's routes call it)."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Callable[[], float],
        *,
        outputs_in_memory: bool = False,
    ) -> None:
        """``outputs_in_memory``: hold a job's output files in memory instead of writing them
        under ``data_dir`` (the benchmarks' emulator: no file system work a job)."""
        data_dir = config.data_dir or Path(tempfile.mkdtemp(prefix="ce-emulator-"))
        self._outputs_in_memory = outputs_in_memory
        self._config = config.model_copy(update={"data_dir": data_dir})
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._jobs: dict[str, _Job] = {}
        self._keys: dict[str, _KeyRecord] = {}
        self._create_calls = 0
        self._in_flight = 0
        self._max_in_flight = 0

    @property
    def config(self) -> EmulatorConfig:
        """The current settings."""
        return self._config

    @property
    def data_dir(self) -> Path:
        """The directory holding every job's ``output/``."""
        assert self._config.data_dir is not None
        return self._config.data_dir

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[None]:
        """One API request being answered: counted in flight (``max_in_flight`` in
        ``stats``) while the block runs, held back ``answer_delay`` seconds first."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            delay = self._config.answer_delay
            if delay > 0:
                await asyncio.sleep(delay)
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def reconfigure(self, update: Mapping[str, Any]) -> EmulatorConfig:
        """Apply a partial settings update; reseed the fault RNG if ``seed`` is in it."""
        fixed = _FIXED_AT_START & update.keys()
        if fixed:
            raise _ApiError(400, f"cannot change at run time: {', '.join(sorted(fixed))}")
        with self._lock:
            current = self._config.model_dump()
            try:
                new = EmulatorConfig.model_validate({**current, **update})
            except ValidationError as exc:
                raise _ApiError(400, _validation_message(exc)) from exc
            self._config = new
            if "seed" in update:
                self._rng = random.Random(new.seed)
        log.info("emulator settings changed: %s", ", ".join(sorted(update)))
        return new

    def draw_fault(self) -> Fault | None:
        """Pick this request's injected fault, if any."""
        with self._lock:
            rates = self._config.fault_rates()
            u = self._rng.random()
        for fault, rate in rates:
            if u < rate:
                return fault
            u -= rate
        return None

    def error_status(self) -> int:
        """500 or 503, at random, for an injected server error."""
        with self._lock:
            return self._rng.choice((500, 503))

    # -- API operations ----------------------------------------------------------------------

    def create(self, body: object, key: str | None) -> dict[str, Any]:
        """``job-create``: replay by ``key``, or validate and create. Returns ``{"jobId"}``.

        A repeated key answers the job it created, whatever the settings now say; the same key
        with a different request (or account) is a 422.
        """
        owner, fields = self._authenticate(body)
        request = {k: v for k, v in fields.items() if k != F_AUTHENTICATOR}
        problem = _validate_create(fields)
        fingerprint = hashlib.sha256(
            json.dumps([owner, request], sort_keys=True).encode()
        ).hexdigest()
        with self._lock:
            config = self._config
            self._create_calls += 1
            record = None
            if key is not None:
                record = self._keys.setdefault(key, _KeyRecord())
                record.calls += 1
            if record is not None and config.honour_idempotency_key and record.remote_ids:
                if record.fingerprint != fingerprint:
                    raise _ApiError(422, f"{IDEMPOTENCY_HEADER} was used for a different job")
                return {F_JOB_ID: record.remote_ids[0]}
            if problem is not None:
                raise _ApiError(400, problem)
            app = request[F_APP]
            if _matches(app, config.error_apps):
                raise _ApiError(503, f"app {app!r} is unavailable (emulated outage)")
            if _matches(app, config.reject_apps):
                raise _ApiError(400, f"app {app!r} is not available")
            job = self._new_job(owner, request, key, config)
            self._jobs[job.remote_id] = job
            if record is not None:
                record.fingerprint = fingerprint
                record.remote_ids.append(job.remote_id)
        log.info("emulator created job %s (app %s, key %s)", job.remote_id, app, key)
        return {F_JOB_ID: job.remote_id}

    def status(self, body: object, base_url: str) -> dict[str, Any]:
        """``job-status``: ``{"jobId", "status", "outputFiles", "error"}``."""
        with self._lock:
            job = self._owned_job(body)
            return self._status_of(job, base_url).to_body()

    def cancel(self, body: object) -> dict[str, Any]:
        """``job-cancel``: Aborted unless already terminal. ``{"jobId", "status"}``."""
        with self._lock:
            job = self._owned_job(body)
            status = job.status_at(self._clock())
            if not is_terminal(status):
                job.cancelled = True
                status = CEStatus.ABORTED
                log.info("emulator aborted job %s", job.remote_id)
            return {F_JOB_ID: job.remote_id, F_STATUS: status.value}

    def output_file(self, remote_id: str, path: str) -> OutputAnswer:
        """The answer to a download of a Completed job's output file ``path`` (relative to
        ``output/``)."""
        try:
            safe_relative_path(path)
        except SpecError as exc:
            raise _ApiError(404, "no such output file") from exc
        with self._lock:
            job = self._jobs.get(remote_id)
            if job is None or job.status_at(self._clock()) != CEStatus.COMPLETED:
                raise _ApiError(404, "no such output file")
            self._materialise(job)
            if path not in job.outputs:
                raise _ApiError(404, "no such output file")
            if job.outputs_unavailable:
                raise _ApiError(503, "output storage unavailable (emulated)")
            content: bytes | GeneratedFile
            if path in job.generated:
                content = GeneratedFile(generated_seed(job.remote_id, path), job.generated[path])
            elif path in job.held:
                content = job.held[path]
            else:
                content = (self._output_dir(job) / path).read_bytes()
            return OutputAnswer(content, job.slow_outputs)

    def stats(self) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` document (see the module docstring)."""
        with self._lock:
            return {
                "create_calls": self._create_calls,
                "jobs": len(self._jobs),
                "by_key": {
                    key: {
                        "calls": r.calls,
                        "jobs": len(r.remote_ids),
                        "remoteJobIds": list(r.remote_ids),
                    }
                    for key, r in self._keys.items()
                },
                "max_in_flight": self._max_in_flight,
            }

    def inspect(self, remote_id: str, base_url: str) -> dict[str, Any]:
        """One job as the emulator sees it (no authenticator)."""
        with self._lock:
            job = self._jobs.get(remote_id)
            if job is None:
                raise _ApiError(404, "unknown job")
            status = self._status_of(job, base_url)
            return {
                **status.to_body(),
                "request": job.request,
                "idempotencyKey": job.idempotency_key,
                "cancelled": job.cancelled,
                "outcome": job.outcome,
                "phases": list(job.phases),
            }

    # -- internals (called with the lock held where they touch state) ------------------------

    def _authenticate(self, body: object) -> tuple[str, dict[str, Any]]:
        """The caller's authenticator and the body as an object, or a 400/401."""
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        authenticator = body.get(F_AUTHENTICATOR)
        if not isinstance(authenticator, str) or not authenticator:
            raise _ApiError(401, "missing authenticator")
        accepted = self._config.authenticators
        if accepted and authenticator not in accepted:
            raise _ApiError(401, "unknown authenticator")
        return authenticator, body

    def _owned_job(self, body: object) -> _Job:
        owner, fields = self._authenticate(body)
        remote_id = fields.get(F_JOB_ID)
        if not isinstance(remote_id, str) or not remote_id:
            raise _ApiError(400, f"{F_JOB_ID} must be a non-empty string")
        job = self._jobs.get(remote_id)
        if job is None or job.owner != owner:
            raise _ApiError(404, "unknown job")
        return job

    def _new_job(
        self, owner: str, request: dict[str, Any], key: str | None, config: EmulatorConfig
    ) -> _Job:
        app, command = request[F_APP], request[F_COMMAND_LINE]
        outcome: Outcome = "complete"
        failure = None
        if _matches(app, config.never_finish_apps):
            outcome = "never"
        elif _matches(app, config.fail_apps) or _matches(command, config.fail_commands):
            outcome = "fail"
            failure = "the job's command exited with status 1 (emulated failure)"
        directives = parse_directives(command)
        if directives.fail_message_bytes is not None:
            outcome = "fail"
            failure = _long_message(directives.fail_message_bytes)
        return _Job(
            remote_id=uuid.uuid4().hex,
            owner=owner,
            request=request,
            idempotency_key=key,
            created_at=self._clock(),
            phases=(
                config.provisioning_seconds,
                config.downloading_seconds,
                config.running_seconds,
            ),
            outcome=outcome,
            failure=failure,
            generated=dict(directives.generated),
            outputs_unavailable=directives.outputs_unavailable,
            slow_outputs=float(directives.slow_outputs),
        )

    def _status_of(self, job: _Job, base_url: str) -> RemoteJobStatus:
        status = job.status_at(self._clock())
        files: tuple[OutputFile, ...] = ()
        error = None
        if status == CEStatus.COMPLETED:
            self._materialise(job)
            public = self._config.public_base_url or base_url
            if not public.endswith("/"):
                public += "/"
            files = tuple(
                OutputFile(
                    filename=path,
                    url=f"{public}{FILES_PATH}/{job.remote_id}/{quote(path)}",
                )
                for path in job.outputs
            )
        elif status == CEStatus.FAILED:
            error = job.failure
        elif status == CEStatus.ABORTED:
            error = "aborted at the submitter's request"
        return RemoteJobStatus(job.remote_id, status, files, error)

    def _output_dir(self, job: _Job) -> Path:
        return self.data_dir / job.remote_id / "output"

    def _materialise(self, job: _Job) -> None:
        """Write a Completed job's deterministic outputs once."""
        if job.outputs:
            return
        seed = f"{job.request[F_APP]}\n{job.request[F_COMMAND_LINE]}\n{job.remote_id}"
        files = {
            "out.txt": (hashlib.sha256(seed.encode()).hexdigest() + "\n").encode(),
            "meta/spec.json": (json.dumps(job.request, sort_keys=True, indent=2) + "\n").encode(),
        }
        if self._outputs_in_memory:
            job.held = files
        else:
            root = self._output_dir(job)
            for path, content in files.items():
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        job.outputs = tuple(sorted([*files, *job.generated], key=lambda p: p.encode()))


def create_emulator_app(
    config: EmulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    inject_faults: bool = True,
) -> FastAPI:
    """Build the emulator's FastAPI app.

    Args:
        config: Its settings (defaults: any authenticator, 0.5/0.5/1.0 s phases, no faults).
        clock: Monotonic seconds; tests may drive time by hand.
        inject_faults: False leaves fault injection out (the fault rates are then never
            applied); ``answer_delay`` still holds every answer back.

    Returns:
        The app; its :class:`Emulator` is ``app.state.emulator``.
    """
    emulator = Emulator(config or EmulatorConfig(), clock)
    app = FastAPI(title="Charity Engine Remote API emulator", docs_url=None, redoc_url=None)
    app.state.emulator = emulator

    @app.exception_handler(_ApiError)
    async def _api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        return JSONResponse({F_ERROR: exc.message}, status_code=exc.status)

    async def _front(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """The one middleware, on the API only: the answer delay (and the count in flight),
        then the injected faults (a fault's answer waits too)."""
        if not request.url.path.startswith(API_PREFIX):
            return await call_next(request)
        async with emulator.answering():
            if not inject_faults:
                return await call_next(request)
            return await _faults(request, call_next)

    async def _faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        fault = emulator.draw_fault()
        if fault == "error":
            return JSONResponse({F_ERROR: "emulated server error"}, emulator.error_status())
        if fault == "rate_limit":
            seconds = emulator.config.retry_after
            return JSONResponse(
                {F_ERROR: "rate limited"}, 429, headers={"Retry-After": f"{seconds:g}"}
            )
        if fault == "timeout":
            # Read the body first: Starlette hands a body read here to the route even once the
            # client has given up, so the request is still processed after the hang, as a
            # server that is merely slow would (a job-create creates the job nobody heard of).
            await request.body()
            await asyncio.sleep(emulator.config.timeout_seconds)
        response = await call_next(request)
        if fault == "malformed" and not request.url.path.startswith(API_PREFIX + FILES_PATH):
            return Response(_MALFORMED_BODY, 200, media_type="application/json")
        return response

    app.middleware("http")(_front)

    def api_base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + API_PREFIX

    @app.post(API_PREFIX + JOB_CREATE_PATH)
    async def job_create(request: Request) -> JSONResponse:
        body = await _json_body(request)
        key = request.headers.get(IDEMPOTENCY_HEADER) or None
        return JSONResponse(emulator.create(body, key))

    @app.post(API_PREFIX + JOB_STATUS_PATH)
    async def job_status(request: Request) -> JSONResponse:
        return JSONResponse(emulator.status(await _json_body(request), api_base(request)))

    @app.post(API_PREFIX + JOB_CANCEL_PATH)
    async def job_cancel(request: Request) -> JSONResponse:
        return JSONResponse(emulator.cancel(await _json_body(request)))

    @app.get(API_PREFIX + FILES_PATH + "/{remote_id}/{path:path}")
    async def output_file(remote_id: str, path: str) -> Response:
        answer = emulator.output_file(remote_id, path)
        content, seconds = answer.content, answer.seconds
        if seconds > 0:
            return StreamingResponse(
                _paced(_file_chunks(content), _file_size(content), seconds),
                media_type="application/octet-stream",
                headers={"Content-Length": str(_file_size(content))},
            )
        if isinstance(content, GeneratedFile):
            return StreamingResponse(
                generated_chunks(content.seed, content.size),
                media_type="application/octet-stream",
                headers={"Content-Length": str(content.size)},
            )
        return Response(content, media_type="application/octet-stream")

    @app.get("/_emulator/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(emulator.stats())

    @app.get("/_emulator/config")
    async def get_config() -> JSONResponse:
        return JSONResponse(emulator.config.public_dump())

    @app.post("/_emulator/config")
    async def set_config(request: Request) -> JSONResponse:
        update = await _json_body(request)
        if not isinstance(update, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        return JSONResponse(emulator.reconfigure(update).public_dump())

    @app.get("/_emulator/jobs/{remote_id}")
    async def inspect_job(remote_id: str, request: Request) -> JSONResponse:
        return JSONResponse(emulator.inspect(remote_id, api_base(request)))

    return app


class LeanEmulatorApp:
    """The emulator's API as a bare ASGI app, for the benchmarks: the routes of
    :func:`create_emulator_app` answering the same bodies from the same :class:`Emulator`
    (idempotency, validation, stats, inspection and settings included), without FastAPI's
    routing, dependency solving and request objects, which cost the emulator more CPU a request
    than its own work. No fault is ever injected (there is no middleware); an unknown route is
    a 404 ``{"error"}``.

    Build it with :func:`create_lean_emulator_app`; serve it with any ASGI server.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._posts: dict[str, Callable[[object, Scope], object]] = {
            API_PREFIX + JOB_CREATE_PATH: self._create,
            API_PREFIX + JOB_STATUS_PATH: lambda body, scope: emulator.status(
                body, _api_base(scope)
            ),
            API_PREFIX + JOB_CANCEL_PATH: lambda body, _scope: emulator.cancel(body),
            "/_emulator/config": lambda body, _scope: self._reconfigure(body),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves one HTTP request (and the lifespan protocol, which needs nothing)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith(API_PREFIX):
            async with self.emulator.answering():
                await self._serve(scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        try:
            handler = self._posts.get(path) if method == "POST" else None
            if handler is not None:
                answer = handler(_parse_json(await _read_body(receive)), scope)
            elif method == "GET":
                answer = self._get(path, scope)
                if isinstance(answer, OutputAnswer):
                    await _send_file(send, answer.content, answer.seconds)
                    return
            else:
                raise _ApiError(404, "no such endpoint")
        except _ApiError as exc:
            await _send_json(send, exc.status, {F_ERROR: exc.message})
            return
        await _send_json(send, 200, answer)

    def _create(self, body: object, scope: Scope) -> object:
        key = next((v for k, v in scope["headers"] if k == _IDEMPOTENCY_NAME), b"")
        return self.emulator.create(body, key.decode("latin-1") or None)

    def _reconfigure(self, update: object) -> object:
        if not isinstance(update, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        return self.emulator.reconfigure(update).public_dump()

    def _get(self, path: str, scope: Scope) -> object:
        if path.startswith(_FILES_PREFIX):
            remote_id, slash, file_path = path[len(_FILES_PREFIX) :].partition("/")
            if remote_id and slash:
                return self.emulator.output_file(remote_id, file_path)
        elif path == "/_emulator/stats":
            return self.emulator.stats()
        elif path == "/_emulator/config":
            return self.emulator.config.public_dump()
        elif path.startswith("/_emulator/jobs/") and "/" not in path[len("/_emulator/jobs/") :]:
            return self.emulator.inspect(path[len("/_emulator/jobs/") :], _api_base(scope))
        raise _ApiError(404, "no such endpoint")


def create_lean_emulator_app(
    config: EmulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    outputs_in_memory: bool = True,
) -> LeanEmulatorApp:
    """The emulator without FastAPI and without fault injection (:class:`LeanEmulatorApp`): the
    benchmarks' emulator, whose cost per request would otherwise be measured with the bridge.
    Its :class:`Emulator` is ``app.emulator``; with ``outputs_in_memory`` (the default) it
    holds output files in memory instead of writing them under ``data_dir``."""
    emulator = Emulator(config or EmulatorConfig(), clock, outputs_in_memory=outputs_in_memory)
    return LeanEmulatorApp(emulator)


_IDEMPOTENCY_NAME: Final = IDEMPOTENCY_HEADER.lower().encode()
_FILES_PREFIX: Final = API_PREFIX + FILES_PATH + "/"
_JSON_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _api_base(scope: Scope) -> str:
    """The ``.../remotejobs/v2/`` URL the request came in on (as FastAPI's routes compute it)."""
    return str(Request(scope).base_url).rstrip("/") + API_PREFIX


def _parse_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _ApiError(400, "the request body is not valid JSON") from exc


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, answer: object) -> None:
    body = _JSON_ENCODER.encode(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _file_size(content: bytes | GeneratedFile) -> int:
    return len(content) if isinstance(content, bytes) else content.size


def _file_chunks(content: bytes | GeneratedFile) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content
    else:
        yield from generated_chunks(content.seed, content.size)


async def _paced(chunks: Iterator[bytes], size: int, seconds: float) -> AsyncIterator[bytes]:
    """``chunks`` (``size`` bytes in all) spread evenly over ``seconds``: a piece every
    ``_PACE_STEP`` s (every ``seconds / size`` s for a file of fewer bytes than that), each sent
    after its share of the time, so that a reader sees steady progress (``slow-outputs``)."""
    pieces = max(1, min(size, round(seconds / _PACE_STEP)))
    held = bytearray()  # read ahead of what is sent, from ``start`` on
    start = sent = 0
    for i in range(pieces):
        end = size * (i + 1) // pieces
        while sent + len(held) - start < end:
            chunk = next(chunks, b"")
            if not chunk:
                break
            held += chunk
        take = min(end - sent, len(held) - start)
        await asyncio.sleep(seconds / pieces)
        if take > 0:
            yield bytes(held[start : start + take])
            start += take
            sent += take
            if start > len(held) // 2:  # drop what was sent, now and then: linear in all
                del held[:start]
                start = 0


async def _send_file(send: Send, content: bytes | GeneratedFile, seconds: float = 0.0) -> None:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % _file_size(content)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if isinstance(content, bytes) and seconds <= 0:
        await send({"type": "http.response.body", "body": content})
        return
    if seconds > 0:
        async for piece in _paced(_file_chunks(content), _file_size(content), seconds):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    else:
        for chunk in _file_chunks(content):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _json_body(request: Request) -> object:
    return _parse_json(await request.body())


def _matches(text: str, needles: frozenset[str]) -> bool:
    return any(needle and needle in text for needle in needles)


def _validate_create(body: Mapping[str, Any]) -> str | None:
    """CE-like validation of a ``job-create`` body (by the job codec): the problem, or None."""
    try:
        CreateBody.model_validate(body)
    except ValidationError as exc:
        return "; ".join(describe(exc))
    return None


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    return f"{where}: {first['msg']}"

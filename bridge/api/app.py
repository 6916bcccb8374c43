"""The bridge's HTTP API: ``create_app`` builds it, ``serve_api_in_thread`` serves it.

``ce-bridge run`` and ``LocalStack`` serve it in the bridge's own process (uvicorn in a daemon
thread) on ``BRIDGE_API_HOST:BRIDGE_API_PORT``, the address the ``resultURI`` written on-chain
points to (unless ``BRIDGE_PUBLIC_URL`` says otherwise).

Guarantees:

- Every answer is JSON except ``/metrics`` (Prometheus text) and output files (their bytes).
  Errors are ``{"detail": "<one line>"}`` with a 4xx status (404 unknown job or file, 409 a job
  state that does not allow the action, 401 admin without the right token, 422 invalid input,
  with FastAPI's list of field errors as ``detail``) or 503 (the database, the node or the
  bridge is unavailable). An unexpected error is a 500 with a generic message; its details go
  to the log only.
- Secrets never appear in an answer: the settings are never serialised, no response model has
  a field for the CE authenticator, the operator key or the admin token, and error messages are
  the bridge's own (which never quote them).
- Each app has its own services and metrics registry: nothing is module-global.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__
from bridge.api import admin, dapp, health, jobs, metrics
from bridge.api.cors import PublicReadCors
from bridge.api.deps import ApiServices
from bridge.api.limits import RequestGuard
from bridge.api.services import (
    AdminActions,
    CallbackFailureCounter,
    MetricsSampler,
    PendingSubmissions,
    ReadinessProbe,
)
from bridge.api.telemetry import ApiMetrics
from bridge.config import Settings
from bridge.engine.service import Bridge
from bridge.errors import (
    BridgeError,
    BridgeNotRunning,
    ChainError,
    JobConflict,
    JobNotFound,
    StoreError,
)
from bridge.http_thread import ThreadedServer
from bridge.store.db import open_database

log = logging.getLogger("bridge.api")

_DESCRIPTION = """\
The operator surface of a ce-bridge process: health and readiness, Prometheus metrics, the jobs
the bridge knows with their timelines, the result files whose manifest hash is written on-chain,
and admin actions behind `Authorization: Bearer <BRIDGE_ADMIN_TOKEN>`.
"""


def create_app(
    settings: Settings, bridge: Bridge | None = None, *, db: Engine | None = None
) -> FastAPI:
    """The API of one bridge.

    Args:
        settings: the bridge's settings (admin token, scan lag limit, confirmations).
        bridge: the running bridge; without one the jobs, outputs and database metrics work,
            readiness reports the missing bridge and admin actions answer 503.
        db: the database; default the bridge's, else ``settings.database_url`` (migrated).

    Returns:
        The FastAPI app; its services are on ``app.state.services``.
    """
    if db is None:
        db = bridge.db if bridge is not None else open_database(settings.database_url)
    callbacks = None
    if bridge is not None:
        callbacks = CallbackFailureCounter(
            bridge.w3,
            bridge.contract,
            first_block=settings.start_block,
            confirmations=settings.confirmation_depth,
            block_range=settings.max_block_range,
        )
    telemetry = ApiMetrics(MetricsSampler(db, bridge, callbacks))
    services = ApiServices(
        settings=settings,
        db=db,
        bridge=bridge,
        readiness=ReadinessProbe(db, bridge, settings.max_scan_lag),
        admin=AdminActions(bridge),
        metrics=telemetry,
        pending=_pending(settings, bridge),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        remove = bridge.ce.add_observer(telemetry.observe_ce_call) if bridge else None
        try:
            yield
        finally:
            if remove is not None:
                remove()

    app = FastAPI(
        title="ce-bridge",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    for router in (health.router, jobs.router, admin.router, metrics.router, dapp.router):
        app.include_router(router)
    _add_error_handlers(app)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    app.add_middleware(RequestGuard, max_bytes=settings.max_request_bytes, admin_token=token)
    app.add_middleware(PublicReadCors, origins=settings.cors_origin_list)
    return app


def _pending(settings: Settings, bridge: Bridge | None) -> PendingSubmissions | None:
    """Finds submissions not yet confirmed, within the blocks the scanner may still be behind."""
    if bridge is None:
        return None
    depth = settings.confirmation_depth
    window = min(depth + settings.max_scan_lag + 1, settings.max_block_range)
    target = bridge.scan_target if settings.finality_tag is not None else None
    return PendingSubmissions(bridge.w3, settings.contract_address, depth, window, target)


def _add_error_handlers(app: FastAPI) -> None:
    """Maps the bridge's errors to ``{"detail": ...}`` answers."""
    codes: list[tuple[type[Exception], int]] = [
        (JobNotFound, status.HTTP_404_NOT_FOUND),
        (JobConflict, status.HTTP_409_CONFLICT),
        (BridgeNotRunning, status.HTTP_503_SERVICE_UNAVAILABLE),
        (ChainError, status.HTTP_503_SERVICE_UNAVAILABLE),
        (StoreError, status.HTTP_503_SERVICE_UNAVAILABLE),
    ]
    for error_type, code in codes:
        app.add_exception_handler(error_type, _answer(code))

    async def database_error(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("API: database error %s", type(exc).__name__)
        return JSONResponse(
            {"detail": f"database unavailable: {type(exc).__name__}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("API: unexpected %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(
            {"detail": "internal error; see the bridge's log"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(BridgeError, internal_error)
    app.add_exception_handler(Exception, internal_error)


def _answer(code: int) -> Callable[[Request, Exception], JSONResponse]:
    def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handler


# ---------------------------------------------------------------------------- serving


class ApiServer(ThreadedServer):
    """The API served by uvicorn from a daemon thread; made by :func:`serve_api_in_thread`."""

    def __init__(self, app: FastAPI, host: str, port: int, startup_timeout: float) -> None:
        super().__init__(
            app, host, port, probe_path="/healthz", name="ce-api", startup_timeout=startup_timeout
        )


def serve_api_in_thread(
    app: FastAPI, host: str, port: int, *, startup_timeout: float = 10.0
) -> ApiServer:
    """Serves ``app`` on ``host:port`` (0: a free port) from a daemon thread.

    Returns once the app answers ``GET /healthz``.

    Returns:
        The handle: ``.url``, ``.port``, ``.stop()``.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
        BridgeError: the server did not start answering within ``startup_timeout``.
    """
    server = ApiServer(app, host, port, startup_timeout)
    log.info("API serving at %s", server.url)
    return server

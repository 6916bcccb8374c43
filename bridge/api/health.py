"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from bridge.api.deps import ReadinessDep
from bridge.api.schemas import Alive, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Alive, summary="Liveness")
def healthz() -> Alive:
    """Always 200 ``{"status": "ok"}`` while the process serves HTTP; checks nothing else."""
    return Alive()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "at least one check failed"}},
)
def readyz(readiness: ReadinessDep, response: Response) -> Readiness:
    """200 when every check passes, else 503; the body lists each check with ``ok`` and a
    message naming what failed.

    Checks: ``rpc`` (the node answers), ``database`` (a query answers), ``scan_lag`` (the scanner
    is at most ``BRIDGE_MAX_SCAN_LAG`` blocks behind ``head - confirmations``), ``ce`` (the CE
    API answers and accepts the authenticator: ``CEClient.ping``), ``writer`` (whether this
    process sends its operator key's transactions or stands by while another process with the
    same key holds its writer; a standby is ready: it reports, it does not fail).
    """
    result = readiness.check()
    if not result.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result

"""FastAPI dependencies: how a route gets its services, its session and its admin check.

``create_app`` stores one :class:`ApiServices` on ``app.state``; the ``Annotated`` aliases below
(``SessionDep``, ``JobsDep``, ``ReadinessDep``, ``AdminDep``, ``MetricsDep``) hand routes what
they need, so a route is a few lines calling a service. Nothing is global: two apps in one
process have their own services.

Admin authentication (:func:`require_admin`): ``Authorization: Bearer <BRIDGE_ADMIN_TOKEN>``,
compared in constant time. No token configured means every admin call is refused. A refusal is
always a 401 with a JSON ``detail``, never an error of the server, and never echoes the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from bridge.api.services import AdminActions, JobQueries, PendingSubmissions, ReadinessProbe
from bridge.api.telemetry import ApiMetrics
from bridge.config import Settings
from bridge.engine.service import Bridge


@dataclass(frozen=True)
class ApiServices:
    """Everything the routes of one app use (built by ``create_app``)."""

    settings: Settings
    db: Engine
    bridge: Bridge | None
    readiness: ReadinessProbe
    admin: AdminActions
    metrics: ApiMetrics
    pending: PendingSubmissions | None = None


def get_services(request: Request) -> ApiServices:
    """The app's services."""
    return cast(ApiServices, request.app.state.services)


ServicesDep = Annotated[ApiServices, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A database session for one request, closed after it."""
    with Session(services.db) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_jobs(session: SessionDep, services: ServicesDep) -> JobQueries:
    """Job queries over the request's session and the output file store."""
    return JobQueries(session, services.settings.output_root)


JobsDep = Annotated[JobQueries, Depends(get_jobs)]


def get_readiness(services: ServicesDep) -> ReadinessProbe:
    """The readiness checks."""
    return services.readiness


ReadinessDep = Annotated[ReadinessProbe, Depends(get_readiness)]


def get_metrics(services: ServicesDep) -> ApiMetrics:
    """The app's metrics registry."""
    return services.metrics


MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="`Authorization: Bearer <BRIDGE_ADMIN_TOKEN>`",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_admin(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Lets the request through only with the configured admin bearer token.

    Raises:
        HTTPException: 401 when no token is configured, none is sent, or it is wrong.
    """
    expected = services.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin endpoints are disabled: BRIDGE_ADMIN_TOKEN is not set",
            headers=_CHALLENGE,
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing admin token: send Authorization: Bearer <BRIDGE_ADMIN_TOKEN>",
            headers=_CHALLENGE,
        )
    sent = credentials.credentials.encode("utf-8")
    if not hmac.compare_digest(sent, expected.get_secret_value().encode("utf-8")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong admin token", headers=_CHALLENGE)


def get_admin(services: ServicesDep) -> AdminActions:
    """The admin actions (after :func:`require_admin`, which the admin router applies)."""
    return services.admin


AdminDep = Annotated[AdminActions, Depends(get_admin)]

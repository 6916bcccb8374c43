"""``GET /metrics``: the bridge's Prometheus metrics (see ``bridge.api.telemetry``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.api.deps import MetricsDep
from bridge.api.schemas import ErrorBody

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        503: {"model": ErrorBody, "description": "the database is unavailable"},
    },
)
def metrics(registry: MetricsDep) -> Response:
    """Every metric of this app's registry, in Prometheus' text format.

    Values computed at scrape (jobs, transactions, gas, chain head, lag, balance, callback
    failures) are current as of this request; a chain value the node cannot give right now is
    left out rather than failing the scrape. A database failure is a 503.
    """
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

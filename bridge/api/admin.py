"""Operator actions: ``/admin/*``, each behind ``Authorization: Bearer <BRIDGE_ADMIN_TOKEN>``.

Every action is a POST, answers JSON, and changes jobs only through the running bridge (its
lock and state machine). 401 without the right token (or with none configured), 404 for an
unknown job, 409 when the job's state does not allow the action, 503 when no bridge runs in
this process.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from bridge.api.deps import AdminDep, require_admin
from bridge.api.jobs import JobId
from bridge.api.schemas import AdminJobResult, DispatchState, ErrorBody, FailRequest

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong admin token"}
}
_NO_BRIDGE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "no bridge runs in this process"}
}
_JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such job"},
    409: {"model": ErrorBody, "description": "the job's state does not allow this"},
}

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={**_UNAUTHORIZED, **_NO_BRIDGE},
)


@router.post("/pause", response_model=DispatchState, summary="Pause dispatch")
def pause(admin: AdminDep) -> DispatchState:
    """Stops sending new jobs to CE: they stay ``new`` until resumed. Jobs already on CE are
    still followed, completed and settled. Stored in the database: the pause holds across
    restarts (and for every bridge process on that database) until resumed; the log says so at
    start and ``ce_bridge_dispatch_paused`` is 1. Idempotent."""
    return admin.pause()


@router.post("/resume", response_model=DispatchState, summary="Resume dispatch")
def resume(admin: AdminDep) -> DispatchState:
    """Sends new jobs to CE again, the waiting ones first. Idempotent."""
    return admin.resume()


@router.post(
    "/jobs/{job_id}/retry",
    response_model=AdminJobResult,
    summary="Retry a job's current step now",
    responses=_JOB_ERRORS,
)
def retry(admin: AdminDep, job_id: JobId) -> AdminJobResult:
    """Clears the open job's failed attempts and backoff so the worker retries its current
    step (create, poll, download) at once. 409 if the job is not open."""
    return admin.retry(job_id)


@router.post(
    "/jobs/{job_id}/fail",
    response_model=AdminJobResult,
    summary="Fail a job on-chain (refund)",
    responses={
        **_JOB_ERRORS,
        400: {"model": ErrorBody, "description": "the body cannot be parsed (not UTF-8 JSON)"},
    },
)
def fail(admin: AdminDep, job_id: JobId, body: Annotated[FailRequest, Body()]) -> AdminJobResult:
    """Queues ``Failed`` with ``failed by the operator: <reason>`` through the state machine:
    once written, the contract credits the requester's refund. The remote job, if any, is
    cancelled. 409 if the job is not open or a terminal update is already queued."""
    return admin.fail(job_id, body.reason)

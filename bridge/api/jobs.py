"""Jobs as the bridge knows them: ``GET /jobs``, ``GET /jobs/{id}`` and the job's outputs.

``GET /jobs/{id}/outputs/`` is the ``resultURI`` the bridge writes on-chain with
``completeJob``: it lists the manifest whose sha256 is the on-chain ``resultHash``, and
``GET /jobs/{id}/outputs/{path}`` streams each file from the output file store
(``bridge.outputs``), so anyone can fetch the files and recompute the hash
(``bridge.results.result_hash``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse

from bridge.api.deps import JobsDep, ServicesDep
from bridge.api.schemas import (
    MAX_JOB_ID,
    ErrorBody,
    JobPage,
    JobPending,
    JobPublic,
    OnchainStatus,
    OutputsPublic,
)
from bridge.engine.states import JobState
from bridge.errors import JobNotFound

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=0, le=MAX_JOB_ID, description="the on-chain job id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such job (or file)"}
}
#: Output files are whatever a job wrote: never let a browser run or sniff them on this origin.
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


@router.get("", response_model=JobPage, summary="List jobs")
def list_jobs(
    jobs: JobsDep,
    state: Annotated[JobState | None, Query(description="the bridge's state")] = None,
    status: Annotated[
        OnchainStatus | None, Query(description="the on-chain status last seen")
    ] = None,
    requester: Annotated[
        str | None,
        Query(pattern=r"^0x[0-9a-fA-F]{40}$", description="submitter address (any case)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JobPage:
    """One page of the jobs matching every filter given, newest first, with the number of
    matching jobs in ``total``. Filters: ``state`` (the bridge's state), ``status`` (the
    on-chain status name), ``requester``."""
    return jobs.page(state=state, status=status, requester=requester, limit=limit, offset=offset)


@router.get(
    "/{job_id}", response_model=JobPublic | JobPending, summary="One job", responses=_NOT_FOUND
)
def get_job(jobs: JobsDep, services: ServicesDep, job_id: JobId) -> JobPublic | JobPending:
    """The job and one timeline, oldest first: its submission (block, tx), every CE call, every
    on-chain update the bridge queued (with its transaction hash and whether it was applied or
    skipped) and the transactions that carried them. A job submitted at the head but not yet
    confirmed is answered ``{"state": "pending", ...}`` with its confirmations so far."""
    try:
        return jobs.job(job_id)
    except JobNotFound:
        found = services.pending.find(job_id) if services.pending is not None else None
        if found is None:
            raise
        return found


@router.get(
    "/{job_id}/outputs/",
    response_model=OutputsPublic,
    summary="A job's output manifest (its resultURI)",
    responses={404: {"model": ErrorBody, "description": "no such job, or no result yet"}},
    name="job_outputs",
)
def get_outputs(jobs: JobsDep, job_id: JobId, request: Request) -> OutputsPublic:
    """The manifest lines (``<sha256>  <path>``, sorted as hashed) whose sha256 is the result
    hash the bridge wrote on-chain, and each file's URL. 404 until the job has a result."""
    return jobs.outputs(job_id, str(request.url_for("job_outputs", job_id=job_id)))


@router.get(
    "/{job_id}/outputs/{path:path}",
    summary="One output file",
    response_class=Response,
    responses={
        200: {
            "description": "the file's bytes, as hashed into the result hash",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **_NOT_FOUND,
    },
)
def get_output_file(
    jobs: JobsDep,
    job_id: JobId,
    path: Annotated[str, Path(min_length=1, description="relative to the job's output/")],
) -> Response:
    """The stored bytes of one output file, exactly as downloaded and hashed, with a content
    type guessed from its name (``application/octet-stream`` otherwise). 404 for a file the job
    does not have."""
    stored = jobs.output_file(job_id, path)
    headers = {**_FILE_HEADERS, "ETag": f'"{stored.sha256}"'}
    if stored.location is not None:
        # Streamed from the output file store in chunks: never read whole into memory.
        return FileResponse(stored.location, media_type=stored.media_type, headers=headers)
    return Response(stored.content, media_type=stored.media_type, headers=headers)

"""/v1/jobs: submit, follow, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from app import idempotency
from app.api.deps import (
    QueueDep,
    ReadAccess,
    SessionDep,
    SettingsDep,
    WriteAccess,
    WritePrincipal,
)
from app.api.errors_schema import V1_ERRORS
from app.api.params import IdempotencyKey, IdPath, Offset
from app.api.schemas import CompressionReport, JobProgress, JobRead, Page, ParetoFront, TrialRead
from app.jobs import service
from app.jobs.spec import CompressJobCreate, SearchJobCreate
from app.tables import Job, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_ERRORS)


def job_read(job: Job) -> JobRead:
    return JobRead(
        id=job.id, kind=job.kind, status=job.status, dataset_id=job.dataset_id,
        model_name=job.model_name, spec=job.spec,
        progress=JobProgress(trials_done=job.trials_done, trials_total=job.trials_total,
                             best_value=job.best_value),
        attempt=job.attempt, max_attempts=job.max_attempts, worker=job.worker, error=job.error,
        result=job.result, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, updated_at=job.updated_at)


@router.post("", status_code=202, response_model=JobRead, summary="Submit a job")
def submit_job(session: SessionDep, settings: SettingsDep, queue: QueueDep,
               principal: WritePrincipal,
               spec: Annotated[SearchJobCreate | CompressJobCreate,
                               Body(discriminator="kind")],
               idempotency_key: IdempotencyKey = None) -> JobRead | JSONResponse:
    """Record the job, then (after commit) send it to the workers. With an
    ``Idempotency-Key``, a repeat of the same request gets the first answer."""
    if idempotency_key is None:
        return job_read(service.submit_job(session, queue, settings, spec))
    keyed = idempotency.KeyedRequest(
        api_key_id=principal.key_id, route="POST /v1/jobs", key=idempotency_key,
        body_hash=idempotency.fingerprint(orjson.dumps(spec.model_dump(mode="json"),
                                                       option=orjson.OPT_SORT_KEYS)))
    earlier = idempotency.earlier_answer(session, keyed)
    if earlier is None:
        read = job_read(service.submit_job(session, queue, settings, spec))
        earlier = idempotency.Answer(202, read.model_dump(mode="json", by_alias=True))
        idempotency.remember(session, keyed, earlier)
    return JSONResponse(earlier.body, status_code=earlier.status_code)


@router.get("", response_model=Page[JobRead], dependencies=[ReadAccess])
def list_jobs(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Offset = 0,
              status: JobStatus | None = None) -> Page[JobRead]:
    """Jobs, newest first."""
    rows, total = service.list_jobs(session, limit=limit, offset=offset, status=status)
    return Page(items=[job_read(row) for row in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobRead, dependencies=[ReadAccess])
def get_job(session: SessionDep, job_id: IdPath) -> JobRead:
    """One job with its progress, error or result."""
    return job_read(service.get_job(session, job_id))


@router.get("/{job_id}/trials", response_model=list[TrialRead], dependencies=[ReadAccess])
def list_trials(session: SessionDep, job_id: IdPath) -> list[TrialRead]:
    """The trials of a search job, in order: parameters, objective values, state,
    per-epoch validation values, duration and worker."""
    return [TrialRead.model_validate(trial) for trial in service.list_trials(session, job_id)]


@router.get("/{job_id}/pareto", response_model=ParetoFront, dependencies=[ReadAccess])
def pareto_front(session: SessionDep, job_id: IdPath) -> ParetoFront:
    """The Pareto-optimal trials of a finished multi-objective job, each with the version
    it was registered as (409 for a single-objective or unfinished job)."""
    return ParetoFront(**service.pareto_front(session, job_id))


@router.get("/{job_id}/report", response_model=CompressionReport, dependencies=[ReadAccess])
def compression_report(session: SessionDep, job_id: IdPath) -> CompressionReport:
    """The parent and every variant of a finished compression (or search + compression)
    job side by side: quality, size, gzip size, latency, agreement, and which is
    recommended and why (409 for a job that did not compress, or has not succeeded)."""
    return CompressionReport(**service.compression_report(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobRead, dependencies=[WriteAccess])
def cancel_job(session: SessionDep, job_id: IdPath) -> JobRead:
    """Cancel a queued or running job; cancelling again answers the same (409 if it
    succeeded or failed)."""
    return job_read(service.cancel_job(session, job_id))

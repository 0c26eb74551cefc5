"""/v1/jobs: submit, follow, list and cancel jobs of every kind; the routes a kind adds
(a search's Pareto front, a compression's report, a batch prediction's upload and output)
are the kind's own (``JobKind.add_routes``), added here with the dependencies they borrow."""

from __future__ import annotations

from typing import Annotated, Any, get_args

import orjson
from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from app import kinds
from app.api import idempotency
from app.api.deps import (
    QueueDep,
    ReadAccess,
    SessionDep,
    SettingsDep,
    StoreDep,
    WriteAccess,
    WritePrincipal,
)
from app.api.errors_schema import STORES_ARTIFACTS, V1_ERRORS
from app.api.params import (
    COUNT_DIGITS,
    IdempotencyKey,
    IdPath,
    Offset,
    PageLimit,
    VersionForm,
)
from app.api.schemas import JobProgress, JobRead, Page, TrialRead
from app.api.uploads import spooled_upload
from app.contracts.enums import JobStatus
from app.contracts.results import SearchResult, result_as
from app.core.db import Session, utcnow
from app.jobs import service
from app.jobs.files import delete_job_files
from app.jobs.http import JobHttp
from app.jobs.kinds import SubmitContext
from app.kinds import JOB_KINDS, JobCreate
from app.tables import Job

# A job's result goes out as its worker stored it: the fields its kind's model names that
# were set, and no others (job_read sets every field of JobRead itself).
AS_STORED: dict[str, Any] = {"response_model": JobRead, "response_model_exclude_unset": True}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_ERRORS)


def best_metric(session: Session, job: Job) -> str | None:
    """The metric ``best_value`` is in, where the job's kind keeps one."""
    kind = JOB_KINDS.get(job.kind)
    return kind.best_metric(session, job) if kind is not None else None


def time_budget_s(job: Job) -> float | None:
    """The wall time the job was given, where its kind tells its progress in time."""
    kind = JOB_KINDS.get(job.kind)
    spec = kind.spec_if_readable(job) if kind is not None else None
    return kind.time_budget_s(spec) if kind is not None and spec is not None else None


def job_progress(job: Job, metric: str | None = None) -> JobProgress:
    """Counts in the kind's unit, best value (in ``metric``), and for a job given a wall
    time (a search's ``timeout_s``) its time: budget and spent."""
    elapsed = None
    if job.started_at is not None:
        elapsed = max(0.0, ((job.finished_at or utcnow()) - job.started_at).total_seconds())
    registered = result_as(SearchResult, job.result)
    return JobProgress(
        done=job.progress_done,
        total=job.progress_total,
        trials_done=job.progress_done,  # deprecated names, for older clients
        trials_total=job.progress_total,
        best_value=job.best_value,
        best_metric=metric,
        registered_value=None if registered is None else registered.registered_score(),
        registered_version=None if registered is None else registered.version,
        unit=JOB_KINDS.progress_unit(job.kind),
        time_budget_s=time_budget_s(job),
        elapsed_s=elapsed,
        phase=job.phase if job.status == JobStatus.RUNNING else None,
    )


def job_read(job: Job, session: Session | None = None) -> JobRead:
    """A job as the API shows it; with ``session``, ``best_value``'s metric is named."""
    metric = best_metric(session, job) if session is not None else None
    return JobRead(
        id=job.id,
        kind=job.kind,
        status=JobStatus(job.status),
        dataset_id=job.dataset_id,
        model_name=job.model_name,
        spec=job.spec,
        progress=job_progress(job, metric),
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker=job.worker,
        error=job.error,
        result=JOB_KINDS.read_result(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        files_deleted_at=job.files_deleted_at,
    )


@router.post("", status_code=202, **AS_STORED, summary="Submit a job")
def submit_job(
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    principal: WritePrincipal,
    spec: Annotated[JobCreate, Body(discriminator="kind")],
    idempotency_key: IdempotencyKey = None,
) -> JobRead | JSONResponse:
    """Record the job, then (after commit) send it to the workers. With an
    ``Idempotency-Key``, a repeat of the same request gets the first answer."""

    def submit() -> Job:
        return kinds.submit(SubmitContext(session, queue, settings, store), spec)

    if idempotency_key is None:
        return job_read(submit(), session)
    keyed = idempotency.KeyedRequest(
        api_key_id=principal.key_id,
        route="POST /v1/jobs",
        key=idempotency_key,
        body_hash=idempotency.fingerprint(
            orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        ),
    )
    earlier = idempotency.earlier_answer(session, keyed)
    if earlier is None:
        read = job_read(submit(), session)
        earlier = idempotency.Answer(
            202, read.model_dump(mode="json", by_alias=True, exclude_unset=True)
        )
        idempotency.remember(session, keyed, earlier)
    return JSONResponse(earlier.body, status_code=earlier.status_code)


@router.get(
    "", response_model=Page[JobRead], response_model_exclude_unset=True, dependencies=[ReadAccess]
)
def list_jobs(
    session: SessionDep,
    limit: PageLimit = 50,
    offset: Offset = 0,
    status: JobStatus | None = None,
) -> Page[JobRead]:
    """Jobs, newest first."""
    rows, total = service.list_jobs(session, limit=limit, offset=offset, status=status)
    return Page(
        items=[job_read(row, session) for row in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{job_id}", **AS_STORED, dependencies=[ReadAccess])
def get_job(session: SessionDep, job_id: IdPath) -> JobRead:
    """One job with its progress, error or result."""
    return job_read(service.get_job(session, job_id), session)


@router.get("/{job_id}/trials", response_model=list[TrialRead], dependencies=[ReadAccess])
def list_trials(session: SessionDep, job_id: IdPath) -> list[TrialRead]:
    """The trials of a search job, in order: parameters, objective values, state,
    per-epoch validation values, duration and worker."""
    return [TrialRead.model_validate(trial) for trial in service.list_trials(session, job_id)]


@router.post("/{job_id}/cancel", **AS_STORED, dependencies=[WriteAccess])
def cancel_job(session: SessionDep, job_id: IdPath) -> JobRead:
    """Cancel a queued or running job; cancelling again answers the same (409 if it
    succeeded or failed)."""
    return job_read(service.cancel_job(session, job_id))


@router.delete("/{job_id}/files", **AS_STORED, dependencies=[WriteAccess])
def delete_files(session: SessionDep, store: StoreDep, job_id: IdPath) -> JobRead:
    """Delete a finished job's files: a batch job's output and uploaded input, and any
    job's scratch (409 while it is queued or running: cancel it first). The job's record
    stays, with ``files_deleted_at`` set; its output then answers 404."""
    return job_read(delete_job_files(session, store, JOB_KINDS, job_id))


# What a kind's routes borrow from this layer (see ``app.jobs.http``): the same markers the
# routes above use, so theirs authenticate, read parameters and publish alike.
KIND_HTTP = JobHttp(
    session=get_args(SessionDep)[1],
    settings=get_args(SettingsDep)[1],
    queue=get_args(QueueDep)[1],
    store=get_args(StoreDep)[1],
    readers=ReadAccess,
    writers=WriteAccess,
    job_id=get_args(IdPath)[1:],
    version_form=get_args(VersionForm)[1:],
    count_digits=COUNT_DIGITS,
    job_read=job_read,
    answers_job=AS_STORED,
    stores_artifacts=STORES_ARTIFACTS,
    spooled_upload=spooled_upload,
)


def _add_kinds_routes() -> None:
    """Every kind's own routes, after this module's (none of theirs takes a path of these)."""
    for kind in JOB_KINDS.values():
        kind.add_routes(router, KIND_HTTP)


_add_kinds_routes()

"""/v1/jobs: submit, follow, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

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
from app.api.schemas import CompressionReport, JobProgress, JobRead, Page, ParetoFront, TrialRead
from app.api.uploads import spooled_upload
from app.batch.output import MEDIA_TYPES, output_file
from app.batch.spec import PredictJobCreate
from app.batch.submit import submit_predict
from app.compression.kind import compression_report as compression_report_of
from app.contracts.enums import JobStatus
from app.contracts.results import SearchResult, result_as
from app.core.db import Session, utcnow
from app.core.errors import InvalidInput
from app.core.names import MODEL_NAME
from app.jobs import service
from app.jobs.files import delete_job_files
from app.jobs.kinds import SubmitContext
from app.kinds import JOB_KINDS, JobCreate
from app.search.kind import pareto_front as pareto_front_of
from app.tables import Job

# A job's result goes out as its worker stored it: the fields its kind's model names that
# were set, and no others (job_read sets every field of JobRead itself).
AS_STORED: dict[str, Any] = {"response_model": JobRead, "response_model_exclude_unset": True}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_ERRORS)


def best_metric(session: Session, job: Job) -> str | None:
    """The metric ``best_value`` is in, where the job's kind keeps one."""
    kind = JOB_KINDS.get(job.kind)
    return kind.best_metric(session, job) if kind is not None else None


def job_progress(job: Job, metric: str | None = None) -> JobProgress:
    """Counts, best value (in ``metric``), and for a job given a wall time (a search's
    ``timeout_s``) its time: budget and spent."""
    kind = JOB_KINDS.get(job.kind)
    budget = kind.time_budget_s(job.spec) if kind is not None else None
    elapsed = None
    if job.started_at is not None:
        elapsed = max(0.0, ((job.finished_at or utcnow()) - job.started_at).total_seconds())
    registered = result_as(SearchResult, job.result)
    return JobProgress(
        trials_done=job.trials_done,
        trials_total=job.trials_total,
        best_value=job.best_value,
        best_metric=metric,
        registered_value=None if registered is None else registered.registered_score(),
        registered_version=None if registered is None else registered.version,
        unit=JOB_KINDS.progress_unit(job.kind),
        time_budget_s=budget,
        elapsed_s=elapsed,
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


@router.post(
    "/predict",
    status_code=202,
    **AS_STORED,
    responses=STORES_ARTIFACTS,
    summary="Submit a batch prediction over an uploaded CSV",
)
def submit_batch_prediction(
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    principal: WritePrincipal,
    file: Annotated[UploadFile, File(description="CSV with a header row: the rows to predict.")],
    model: Annotated[str, Form(description="Registered model."), MODEL_NAME.published],
    version: VersionForm = None,
    key_columns: Annotated[
        str | None,
        Form(
            max_length=10_000, description="Comma-separated columns copied next to the predictions."
        ),
    ] = None,
    output_format: Annotated[
        Literal["csv", "parquet"], Form(description="Output file format.")
    ] = "csv",
    chunk_rows: Annotated[
        int, Form(ge=1_000, le=1_000_000, description="Rows per chunk."), COUNT_DIGITS
    ] = 16_384,
) -> JobRead:
    """The same job as ``POST /v1/jobs`` with ``kind: predict``, with the rows uploaded
    here instead of read from a stored dataset; the CSV is kept as the job's input."""
    keys = [name.strip() for name in (key_columns or "").split(",") if name.strip()]
    try:
        spec = PredictJobCreate(
            kind="predict",
            model=model,
            version=version,
            key_columns=keys,
            output_format=output_format,
            chunk_rows=chunk_rows,
        )
    except ValidationError as invalid:
        first = invalid.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    with spooled_upload(file, settings, ".csv") as path:
        job = submit_predict(
            SubmitContext(session, queue, settings, store),
            spec,
            upload=path,
            filename=file.filename,
        )
    return job_read(job)


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


@router.get("/{job_id}/pareto", response_model=ParetoFront, dependencies=[ReadAccess])
def pareto_front(session: SessionDep, job_id: IdPath) -> ParetoFront:
    """The Pareto-optimal trials of a finished multi-objective job, each with the version
    it was registered as (409 for a single-objective or unfinished job)."""
    return ParetoFront(**pareto_front_of(session, job_id))


@router.get("/{job_id}/report", response_model=CompressionReport, dependencies=[ReadAccess])
def compression_report(session: SessionDep, job_id: IdPath) -> CompressionReport:
    """The parent and every variant of a finished compression (or search + compression)
    job side by side: quality, size, gzip size, latency, agreement, and which is
    recommended and why (409 for a job that did not compress, or has not succeeded)."""
    return CompressionReport(job_id=job_id, **compression_report_of(session, job_id).model_dump())


@router.get(
    "/{job_id}/output",
    response_class=FileResponse,
    dependencies=[ReadAccess],
    responses={
        200: {
            "content": {media: {} for media in MEDIA_TYPES.values()},
            "description": "The predictions file.",
        }
    },
)
def job_output(session: SessionDep, store: StoreDep, job_id: IdPath) -> FileResponse:
    """A finished batch prediction's file: ``row`` (the input row's 1-based number), the key
    columns, then the prediction (and each class's probability) per row. 409 for another
    kind of job or one that has not succeeded."""
    found = output_file(service.get_job(session, job_id), store)
    return FileResponse(found.path, media_type=found.media_type, filename=found.filename)


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

"""Job rules: submit (commit, then enqueue), read, list, cancel."""

from __future__ import annotations

import functools

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.repository import DatasetRepository
from app.db import defer_until_commit, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs.queue import JobQueue
from app.jobs.repository import JobRepository
from app.jobs.spec import JobCreate
from app.registry.repository import ModelRepository
from app.tables import FINAL_JOB_STATES, Job, JobStatus, Trial


def submit_job(session: Session, queue: JobQueue, settings: Settings, spec: JobCreate) -> Job:
    """Record a queued job; it is sent to the broker only after the transaction commits."""
    dataset = DatasetRepository(session).get(spec.dataset_id)
    if dataset is None:
        raise InvalidInput(f"dataset_id: dataset {spec.dataset_id} not found")
    model = ModelRepository(session).get_by_name(spec.model_name)
    if model is not None and model.task != dataset.task:
        raise Conflict(f"model_name: model {spec.model_name!r} is a {model.task} model but "
                       f"dataset {dataset.id} is a {dataset.task} dataset")
    now = utcnow()
    job = JobRepository(session).add(Job(
        kind=spec.kind, status=JobStatus.QUEUED, dataset_id=dataset.id,
        model_name=spec.model_name, spec=spec.model_dump(mode="json"),
        max_attempts=settings.job_max_attempts, trials_total=spec.search.max_trials,
        attempt=0, trials_done=0, sends=1, enqueued_at=now, created_at=now, updated_at=now))
    defer_until_commit(session, functools.partial(queue.send, job.id, job.kind))
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job, or NotFound."""
    job = JobRepository(session).get(job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(session: Session, *, limit: int, offset: int,
              status: JobStatus | None = None) -> tuple[list[Job], int]:
    """A page of jobs, newest first, with the total count."""
    return JobRepository(session).page(limit=limit, offset=offset, status=status)


def list_trials(session: Session, job_id: int) -> list[Trial]:
    """The trials of a job in order."""
    get_job(session, job_id)
    return JobRepository(session).trials(job_id)


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a queued or running job; its worker stops at the next lease renewal."""
    job = get_job(session, job_id)
    if job.status in FINAL_JOB_STATES:
        raise Conflict(f"job {job_id} is already {job.status}")
    now = utcnow()
    session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .values(status=JobStatus.CANCELLED, finished_at=now, updated_at=now,
                lease_expires_at=None, error="cancelled by request")
        .execution_options(synchronize_session=False))
    session.refresh(job)
    return job

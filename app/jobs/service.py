"""Job rules every kind shares: read, list, cancel. Submitting is each kind's own
(``app.jobs.kinds``; the kinds are listed in ``app.kinds``)."""

from __future__ import annotations

from app.contracts.enums import FINAL_JOB_STATES, JobStatus
from app.core.db import Session, utcnow
from app.core.errors import Conflict
from app.jobs.repository import JobRepository
from app.jobs.trial_repository import TrialRepository
from app.tables import Job, Trial


def get_job(session: Session, job_id: int) -> Job:
    """The job, or NotFound."""
    return JobRepository(session).get_or_raise(job_id)


def list_jobs(
    session: Session, *, limit: int, offset: int, status: JobStatus | None = None
) -> tuple[list[Job], int]:
    """A page of jobs, newest first, with the total count."""
    return JobRepository(session).newest_first(limit=limit, offset=offset, status=status)


def list_trials(session: Session, job_id: int) -> list[Trial]:
    """The trials of a job in order."""
    get_job(session, job_id)
    return TrialRepository(session).of_job(job_id)


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a queued or running job; its worker stops at the next lease renewal.
    Idempotent: cancelling a cancelled job answers with it again; a job that succeeded or
    failed (before or while this ran) is a Conflict that says so."""
    job = get_job(session, job_id)
    if job.status in FINAL_JOB_STATES and job.status != JobStatus.CANCELLED:
        raise Conflict(
            f"job {job_id} already {job.status}; only a queued or running job can be cancelled"
        )
    jobs = JobRepository(session)
    jobs.cancel(job_id, now=utcnow(), reason="cancelled by request")
    jobs.refresh(job)
    if job.status != JobStatus.CANCELLED:
        raise Conflict(
            f"job {job_id} already {job.status}; only a queued or running job can be cancelled"
        )
    return job

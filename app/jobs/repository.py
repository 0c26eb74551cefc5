"""SQL for jobs, including the conditional updates that make claims, leases and cancels
safe. A search's trials are ``trial_repository``'s."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from app.contracts.enums import FINAL_JOB_STATES, JobStatus
from app.core.db import rows_changed
from app.core.repository import Repository
from app.tables import Job

DeletedAt = InstrumentedAttribute[datetime | None]  # a job's column that marks files deleted


class JobRepository(Repository[Job]):
    """Queries over jobs."""

    row_type = Job
    noun = "job"

    def newest_first(
        self, *, limit: int, offset: int, status: str | None = None
    ) -> tuple[list[Job], int]:
        """Newest first, of one status when given."""
        return self.page(
            limit=limit,
            offset=offset,
            order_by=Job.id.desc(),
            where=[Job.status == status] if status else [],
        )

    def claim(self, job_id: int, *, worker: str, now: datetime, lease: timedelta) -> bool:
        """queued -> running, attempt + 1, in one conditional update; True if we won."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.attempt < Job.max_attempts)
            .values(
                status=JobStatus.RUNNING,
                attempt=Job.attempt + 1,
                worker=worker,
                lease_expires_at=now + lease,
                phase=None,  # a new attempt says its own
                started_at=func.coalesce(Job.started_at, now),
                updated_at=now,
            )
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def renew(
        self, job_id: int, *, attempt: int, now: datetime, lease: timedelta, **progress: Any
    ) -> bool:
        """Extend our lease (and store progress) if the job is still ours; False if lost."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempt == attempt)
            .values(lease_expires_at=now + lease, updated_at=now, **progress)
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def holds(self, job_id: int, *, attempt: int) -> bool:
        """Whether ``attempt`` still runs the job (not cancelled, reaped or taken over)."""
        found = self.session.scalar(
            select(Job.id).where(
                Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempt == attempt
            )
        )
        return found is not None

    def finish(
        self,
        job_id: int,
        *,
        attempt: int,
        status: JobStatus,
        now: datetime,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """running -> final state, only for the attempt that holds the job."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempt == attempt)
            .values(
                status=status,
                error=error,
                result=result,
                finished_at=now,
                updated_at=now,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def cancel(self, job_id: int, *, now: datetime, reason: str) -> bool:
        """queued or running -> cancelled, in one conditional update; True if it was either
        (a worker that holds it sees the change at its next poll and stops)."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(
                status=JobStatus.CANCELLED,
                finished_at=now,
                updated_at=now,
                lease_expires_at=None,
                error=reason,
            )
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def expired(self, now: datetime) -> list[Job]:
        """Running jobs whose worker stopped renewing the lease."""
        return list(
            self.session.scalars(
                select(Job)
                .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
                .order_by(Job.id)
            )
        )

    def requeue_lost(self, job: Job, *, now: datetime) -> bool:
        """``expired``'s ``job`` queued again for another attempt (its message counted as
        sent now); False when another reaper, or its worker renewing, got there first."""
        return self._settle_lost(
            job, now, status=JobStatus.QUEUED, enqueued_at=now, sends=Job.sends + 1
        )

    def fail_lost(self, job: Job, *, now: datetime, reason: str) -> bool:
        """``expired``'s ``job`` failed for good with ``reason``; False as ``requeue_lost``."""
        return self._settle_lost(job, now, status=JobStatus.FAILED, error=reason, finished_at=now)

    def _settle_lost(self, job: Job, now: datetime, **values: object) -> bool:
        """One conditional update on the attempt ``job`` was read with, while it is still
        running past its lease: of two reapers (or a reaper and the worker) one wins."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(
                Job.id == job.id,
                Job.status == JobStatus.RUNNING,
                Job.attempt == job.attempt,
                Job.lease_expires_at < now,
            )
            .values(lease_expires_at=None, updated_at=now, **values)
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def stale_queued(self, now: datetime, resend_after: timedelta) -> list[Job]:
        """Queued jobs not sent for a while (never sent, or the message may be lost)."""
        cutoff = now - resend_after
        return list(
            self.session.scalars(
                select(Job)
                .where(
                    Job.status == JobStatus.QUEUED,
                    or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff),
                )
                .order_by(Job.id)
            )
        )

    def resend(self, job: Job, *, now: datetime) -> bool:
        """Count ``stale_queued``'s ``job`` as sent again now, unless it left the queue or
        another reaper resent it since it was read (its ``sends`` moved); True if this did."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED, Job.sends == job.sends)
            .values(enqueued_at=now, sends=Job.sends + 1)
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def _active(self, *where: Any) -> list[Job]:
        active = Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
        return list(self.session.scalars(select(Job).where(active, *where).order_by(Job.id)))

    def active_on_dataset(self, dataset_id: int) -> list[Job]:
        """Queued or running jobs that read a dataset."""
        return self._active(Job.dataset_id == dataset_id)

    def active_for_model(self, name: str) -> list[Job]:
        """Queued or running jobs that name a model (as their source or their target)."""
        return self._active(Job.model_name == name)

    def _finished_before(self, marker: DeletedAt, cutoff: datetime, limit: int) -> list[Job]:
        return list(
            self.session.scalars(
                select(Job)
                .where(
                    Job.status.in_(FINAL_JOB_STATES),
                    marker.is_(None),
                    Job.finished_at < cutoff,
                )
                .order_by(Job.id)
                .limit(limit)
            )
        )

    def scratch_kept_since(self, cutoff: datetime, *, limit: int) -> list[Job]:
        """Jobs that finished before ``cutoff`` whose scratch is still kept."""
        return self._finished_before(Job.scratch_deleted_at, cutoff, limit)

    def files_kept_since(self, cutoff: datetime, *, limit: int) -> list[Job]:
        """Jobs that finished before ``cutoff`` whose files are still kept."""
        return self._finished_before(Job.files_deleted_at, cutoff, limit)

    def _mark(self, job_id: int, marker: DeletedAt, now: datetime, *also: DeletedAt) -> bool:
        """Set ``marker`` (and ``also``) to ``now`` unless ``marker`` is set already."""
        changed = rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, marker.is_(None))
            .values({column: now for column in (marker, *also)})
            .execution_options(synchronize_session=False),
        )
        return bool(changed)

    def mark_scratch_deleted(self, job_id: int, now: datetime) -> bool:
        """Mark a job's scratch deleted, unless it is; True if this call marked it."""
        return self._mark(job_id, Job.scratch_deleted_at, now)

    def mark_files_deleted(self, job_id: int, now: datetime) -> bool:
        """Mark every file of a job deleted, unless they are; True if this call did."""
        return self._mark(job_id, Job.files_deleted_at, now, Job.scratch_deleted_at)

    def counts_by_status(self) -> dict[str, int]:
        rows = self.session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {status: count for status, count in rows.tuples()}

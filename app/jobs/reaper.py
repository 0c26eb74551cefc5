"""The reaper: keeps the 202 promise when a broker message or a worker is lost."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.core.config import Settings
from app.core.db import Session, defer_until_commit, utcnow
from app.jobs.queue import JobQueue
from app.jobs.repository import JobRepository
from app.jobs.runner import time_limit_message
from app.jobs.trial_repository import TrialRepository
from app.tables import Job

logger = logging.getLogger(__name__)

MAX_RESEND_BACKOFF = 16  # the resend interval doubles per send, up to this many times


@dataclass
class ReapReport:
    """What one pass of the reaper did."""

    resent: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _resend_due(job: Job, now: datetime, base: timedelta) -> bool:
    if job.enqueued_at is None:
        return True
    backoff = min(2 ** max(job.sends - 1, 0), MAX_RESEND_BACKOFF)
    return now - job.enqueued_at >= base * backoff


def reap(
    session: Session, settings: Settings, queue: JobQueue, now: datetime | None = None
) -> ReapReport:
    """Re-queue or fail jobs whose lease expired; resend jobs left queued. Safe to run from
    several gateways at once: each change is a conditional update on the job's state."""
    now = now or utcnow()
    repo = JobRepository(session)
    report = ReapReport()
    for job in repo.expired(now):
        out_of_time = job.started_at is not None and now >= job.started_at + timedelta(
            seconds=settings.max_job_s
        )
        if job.attempt >= job.max_attempts or out_of_time:
            reason = (
                f"{time_limit_message(settings)}, and its worker stopped answering"
                if out_of_time
                else f"worker lost: the lease expired on attempt "
                f"{job.attempt} of {job.max_attempts}; giving up"
            )
            if not repo.fail_lost(job, now=now, reason=reason):
                continue  # another reaper, or the worker itself, got there first
            # For good: nothing will run these trials' heartbeat checks any more. (On a
            # requeue the next attempt fails them through their stale heartbeats instead.)
            TrialRepository(session).mark_lost(
                job.id, now, "the worker running this trial stopped (lease expired)"
            )
            report.failed.append(job.id)
        elif repo.requeue_lost(job, now=now):
            report.requeued.append(job.id)
            defer_until_commit(session, functools.partial(queue.send, job.id, job.kind))
    base = timedelta(seconds=settings.queued_resend_s)
    for job in repo.stale_queued(now, base):
        if job.id in report.requeued or not _resend_due(job, now, base):
            continue
        if repo.resend(job, now=now):
            report.resent.append(job.id)
            defer_until_commit(session, functools.partial(queue.send, job.id, job.kind))
    if report.requeued or report.failed or report.resent:
        logger.warning(
            "reaper: requeued %s, failed %s, resent %s",
            report.requeued,
            report.failed,
            report.resent,
        )
    return report

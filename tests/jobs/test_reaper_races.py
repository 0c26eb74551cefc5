"""The reaper's changes are conditional updates on the job as it was read: a second reaper
(another gateway) that read the same job before the first one changed it changes nothing,
and sends nothing."""

from __future__ import annotations

from datetime import timedelta

from app.contracts.enums import JobStatus
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.jobs.queue import JobQueue
from app.jobs.reaper import reap
from app.jobs.repository import JobRepository
from app.tables import Job
from tests.api.test_jobs import broker_messages
from tests.jobs.test_leases import LEASE, expire, load
from tests.jobs.test_leases import job_id as job_id  # the fixture: a queued search job


def _read_expired(settings: Settings, job_id: int) -> Job:
    """The job as a reaper reads it, kept after its session ends."""
    with session_scope(settings.database_url) as session:
        JobRepository(session).claim(job_id, worker="dead", now=utcnow(), lease=LEASE)
        expire(session, job_id)
    with session_scope(settings.database_url) as session:
        [job] = JobRepository(session).expired(utcnow())
        return job


def test_a_lost_job_is_requeued_or_failed_by_one_reaper_only(
    settings: Settings, job_id: int
) -> None:
    stale = _read_expired(settings, job_id)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, JobQueue(settings)).requeued == [job_id]
    assert len(broker_messages(settings)) == 1
    with session_scope(settings.database_url) as session:  # the second reaper, late
        repo = JobRepository(session)
        assert not repo.requeue_lost(stale, now=utcnow())
        assert not repo.fail_lost(stale, now=utcnow(), reason="lost")
    job = load(settings, job_id)
    assert (job.status, job.sends, job.error) == (JobStatus.QUEUED, stale.sends + 1, None)


def test_a_renewed_lease_is_not_reaped(settings: Settings, job_id: int) -> None:
    stale = _read_expired(settings, job_id)
    with session_scope(settings.database_url) as session:  # the worker was only slow
        assert JobRepository(session).renew(job_id, attempt=1, now=utcnow(), lease=LEASE)
    with session_scope(settings.database_url) as session:
        assert not JobRepository(session).requeue_lost(stale, now=utcnow())
    assert load(settings, job_id).status == JobStatus.RUNNING


def test_a_queued_job_is_resent_once_by_two_reapers(settings: Settings, job_id: int) -> None:
    later = utcnow() + timedelta(seconds=settings.queued_resend_s + 1)
    with session_scope(settings.database_url) as session:
        [stale] = JobRepository(session).stale_queued(later, timedelta(seconds=1))
    with session_scope(settings.database_url) as session:
        assert JobRepository(session).resend(stale, now=later)
    with session_scope(settings.database_url) as session:  # read before the first resend
        assert not JobRepository(session).resend(stale, now=later)
    assert load(settings, job_id).sends == stale.sends + 1

"""Running one job in a worker: claim it, keep its lease, record the outcome exactly once."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope, utcnow
from app.errors import KilnError
from app.jobs.repository import JobRepository
from app.tables import JobStatus

logger = logging.getLogger(__name__)

Recorder = Callable[[Session], dict[str, Any]]


class JobLost(Exception):
    """The job is no longer ours (cancelled, or reaped after our lease expired): stop quietly."""


class JobFailed(KilnError):
    """The job cannot succeed; the message is shown to the user as the job's error."""


def worker_name() -> str:
    """Host and process id, shown on jobs and trials."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobContext:
    """What a job handler gets: ids, settings, a stop signal and a progress reporter."""

    job_id: int
    attempt: int
    settings: Settings
    worker: str
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_s)

    def check(self) -> None:
        """Raise JobLost if the job was cancelled or taken away from this worker."""
        if self.stop.is_set():
            raise JobLost(f"job {self.job_id} attempt {self.attempt} lost its lease")

    def report(self, **progress: Any) -> None:
        """Store progress now (also renews the lease); raise JobLost if the job is gone."""
        with session_scope(self.settings.database_url) as session:
            ok = JobRepository(session).renew(self.job_id, attempt=self.attempt, now=utcnow(),
                                              lease=self.lease, **progress)
        if not ok:
            self.stop.set()
        self.check()


class LeaseKeeper(threading.Thread):
    """Renews the job's lease every third of its length until stopped or lost."""

    def __init__(self, context: JobContext) -> None:
        super().__init__(name=f"lease-{context.job_id}", daemon=True)
        self.context = context
        self.finished = threading.Event()

    def run(self) -> None:
        interval = self.context.settings.job_lease_s / 3
        while not self.finished.wait(interval):
            try:
                with session_scope(self.context.settings.database_url) as session:
                    ok = JobRepository(session).renew(
                        self.context.job_id, attempt=self.context.attempt, now=utcnow(),
                        lease=self.context.lease)
            except Exception:  # a database hiccup: try again next interval
                logger.exception("lease renewal for job %s failed", self.context.job_id)
                continue
            if not ok:
                logger.warning("job %s is no longer ours; stopping", self.context.job_id)
                self.context.stop.set()
                return


def _claim(settings: Settings, job_id: int, worker: str) -> JobContext | None:
    with session_scope(settings.database_url) as session:
        repo = JobRepository(session)
        job = repo.get(job_id)
        if job is None:
            logger.warning("job %s does not exist; message dropped", job_id)
            return None
        if job.status != JobStatus.QUEUED:
            logger.info("job %s is %s; nothing to do", job_id, job.status)
            return None
        if not repo.claim(job_id, worker=worker, now=utcnow(),
                          lease=timedelta(seconds=settings.job_lease_s)):
            logger.info("job %s was claimed elsewhere", job_id)
            return None
        session.refresh(job)
        # Trials the previous attempt left running are failed by their stale heartbeats.
        return JobContext(job_id=job_id, attempt=job.attempt, settings=settings, worker=worker)


def _finish(context: JobContext, status: JobStatus, *, error: str | None = None,
            recorder: Recorder | None = None) -> None:
    with session_scope(context.settings.database_url) as session:
        result = recorder(session) if recorder else None
        if not JobRepository(session).finish(context.job_id, attempt=context.attempt,
                                              status=status, now=utcnow(), error=error,
                                              result=result):
            raise JobLost(f"job {context.job_id} changed hands before it could finish")


def run_job(settings: Settings, job_id: int, handler: Callable[[JobContext], Recorder]) -> None:
    """Claim ``job_id`` and run ``handler``; the recorder it returns runs in the same
    transaction that marks the job succeeded, so a result is stored exactly once."""
    context = _claim(settings, job_id, worker_name())
    if context is None:
        return
    keeper = LeaseKeeper(context)
    keeper.start()
    try:
        recorder = handler(context)
        context.check()
        _finish(context, JobStatus.SUCCEEDED, recorder=recorder)
        logger.info("job %s succeeded", job_id)
    except JobLost as lost:
        logger.warning("%s", lost)
    except KilnError as failure:
        logger.warning("job %s failed: %s", job_id, failure.message)
        _finish_quietly(context, failure.message)
    except Exception as error:
        logger.exception("job %s crashed", job_id)
        _finish_quietly(context, f"internal error: {type(error).__name__}: {error}")
    finally:
        keeper.finished.set()
        keeper.join(timeout=5)


def _finish_quietly(context: JobContext, error: str) -> None:
    try:
        _finish(context, JobStatus.FAILED, error=error[:4000])
    except JobLost as lost:
        logger.warning("%s", lost)

"""Running one job in a worker: claim it, keep its lease, record the outcome exactly once."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel

from app.contracts.enums import JobStatus
from app.contracts.results import StoredResult
from app.core.config import Settings
from app.core.db import Session, database_unavailable, session_scope, utcnow
from app.core.errors import KilnError
from app.jobs.repository import JobRepository
from app.training.stopping import TrainingStopped, stop_checks

logger = logging.getLogger(__name__)

Recorder = Callable[[Session], StoredResult]
CANCEL_POLL_S = 1.0  # how often a running job's worker looks for a cancel


class JobLost(Exception):
    """The job is no longer ours (cancelled, or reaped after our lease expired): stop quietly."""


class JobFailed(KilnError):
    """The job cannot succeed; the message is shown to the user as the job's error."""


def worker_name() -> str:
    """Host and process id, shown on jobs and trials."""
    return f"{socket.gethostname()}:{os.getpid()}"


def time_limit_message(settings: Settings) -> str:
    return f"the job reached its time limit of {settings.max_job_s:g} s (KILN_MAX_JOB_S)"


@dataclass
class JobContext:
    """What a job handler gets: ids, settings, a stop signal, the job's hard deadline
    (``time.monotonic()`` seconds) and a progress reporter."""

    job_id: int
    attempt: int
    settings: Settings
    worker: str
    deadline: float = math.inf
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_s)

    def check(self) -> None:
        """Raise JobLost if the job was cancelled or taken away from this worker."""
        if self.stop.is_set():
            raise JobLost(f"job {self.job_id} attempt {self.attempt} lost its lease")

    def check_batch(self) -> None:
        """The per-batch check training runs: cancelled, lost, or past the hard deadline."""
        self.check()
        if time.monotonic() >= self.deadline:
            raise TrainingStopped(time_limit_message(self.settings))

    def report(
        self,
        *,
        done: int | None = None,
        total: int | None = None,
        checkpoint: BaseModel | None = None,
        phase: str | None = None,
    ) -> None:
        """Store progress now, in the kind's unit (``done`` of ``total``; ``checkpoint``:
        what a later attempt may reuse; ``phase``: what it does now, in words), and renew
        the lease; raise JobLost if the job is
        gone."""
        progress: dict[str, object] = {}  # the columns to set besides the lease
        if done is not None:
            progress["progress_done"] = done
        if total is not None:
            progress["progress_total"] = total
        if checkpoint is not None:
            progress["checkpoint"] = checkpoint.model_dump(mode="json")
        if phase is not None:
            progress["phase"] = phase[:64]
        with session_scope(self.settings.database_url) as session:
            ok = JobRepository(session).renew(
                self.job_id, attempt=self.attempt, now=utcnow(), lease=self.lease, **progress
            )
        if not ok:
            self.stop.set()
        self.check()


def hard_deadline(settings: Settings, started_at: datetime | None) -> float:
    """``started_at + KILN_MAX_JOB_S`` as a ``time.monotonic()`` reading."""
    if started_at is None:
        return time.monotonic() + settings.max_job_s
    left = (started_at + timedelta(seconds=settings.max_job_s) - utcnow()).total_seconds()
    return time.monotonic() + left


class JobWatcher(threading.Thread):
    """Polls the job about once a second and sets ``context.stop`` as soon as it is
    cancelled or taken over, so a cancel acts within seconds, even inside an epoch. With
    ``renews`` (the job's main worker) it also renews the lease every third of its length,
    until the hard deadline: a worker stuck past it lets the lease lapse, and the reaper
    fails the job."""

    def __init__(self, context: JobContext, *, renews: bool) -> None:
        super().__init__(name=f"watch-{context.job_id}", daemon=True)
        self.context = context
        self.renews = renews
        self.finished = threading.Event()

    def _still_ours(self, renew: bool) -> bool:
        context = self.context
        with session_scope(context.settings.database_url) as session:
            repo = JobRepository(session)
            if renew:
                return repo.renew(
                    context.job_id, attempt=context.attempt, now=utcnow(), lease=context.lease
                )
            return repo.holds(context.job_id, attempt=context.attempt)

    def run(self) -> None:
        every = self.context.settings.job_lease_s / 3
        poll = min(CANCEL_POLL_S, every)
        next_renewal = time.monotonic() + every
        while not self.finished.wait(poll):
            now = time.monotonic()
            renew = self.renews and now >= next_renewal and now < self.context.deadline
            try:
                ok = self._still_ours(renew)
            except Exception:  # a database hiccup: try again at the next poll
                logger.exception("checking job %s failed", self.context.job_id)
                continue
            if renew:
                next_renewal = now + every
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
        if not repo.claim(
            job_id, worker=worker, now=utcnow(), lease=timedelta(seconds=settings.job_lease_s)
        ):
            logger.info("job %s was claimed elsewhere", job_id)
            return None
        session.refresh(job)
        # Trials the previous attempt left running are failed by their stale heartbeats.
        return JobContext(
            job_id=job_id,
            attempt=job.attempt,
            settings=settings,
            worker=worker,
            deadline=hard_deadline(settings, job.started_at),
        )


def _finish(
    context: JobContext,
    status: JobStatus,
    *,
    error: str | None = None,
    recorder: Recorder | None = None,
) -> None:
    with session_scope(context.settings.database_url) as session:
        result = recorder(session).stored_json() if recorder else None
        if not JobRepository(session).finish(
            context.job_id,
            attempt=context.attempt,
            status=status,
            now=utcnow(),
            error=error,
            result=result,
        ):
            raise JobLost(f"job {context.job_id} changed hands before it could finish")


def run_job(settings: Settings, job_id: int, handler: Callable[[JobContext], Recorder]) -> None:
    """Claim ``job_id`` and run ``handler``; the recorder it returns runs in the same
    transaction that marks the job succeeded, so a result is stored exactly once."""
    context = _claim(settings, job_id, worker_name())
    if context is None:
        return
    if time.monotonic() >= context.deadline:
        _finish_quietly(context, time_limit_message(settings))
        return
    watcher = JobWatcher(context, renews=True)
    watcher.start()
    try:
        with stop_checks(context.check_batch):
            recorder = handler(context)
        context.check()
        _finish(context, JobStatus.SUCCEEDED, recorder=recorder)
        logger.info("job %s succeeded", job_id)
    except JobLost as lost:
        logger.warning("%s", lost)
    except (KilnError, TrainingStopped) as failure:
        message = failure.message if isinstance(failure, KilnError) else str(failure)
        logger.warning("job %s failed: %s", job_id, message)
        _finish_quietly(context, message)
    except Exception as error:
        if database_unavailable(error):
            # Not the job's fault, and nothing can be recorded now: the job keeps its
            # lease until it lapses, then the reaper re-queues it (attempts permitting).
            logger.warning(
                "job %s stopped: the database is unavailable (%s); it runs again "
                "once its lease lapses",
                job_id,
                type(error).__name__,
            )
            return
        reference = uuid.uuid4().hex[:12]
        logger.exception("job %s crashed (reference %s)", job_id, reference)
        _finish_quietly(
            context, f"internal error (reference {reference}); the worker's log has the details"
        )
    finally:
        watcher.finished.set()
        watcher.join(timeout=5)


def _finish_quietly(context: JobContext, error: str) -> None:
    try:
        _finish(context, JobStatus.FAILED, error=error[:4000])
    except JobLost as lost:
        logger.warning("%s", lost)

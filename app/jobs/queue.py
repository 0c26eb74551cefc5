"""The Celery app as configured from settings, and sending jobs by task name."""

from __future__ import annotations

import logging
from typing import TypeAlias

from celery import Celery

from app.core.config import Settings
from app.core.errors import Unavailable
from app.jobs.broker_check import CachedProbe, broker_probe

logger = logging.getLogger(__name__)

# What a message's arguments may be: JSON (the broker's serializer).
JsonArg: TypeAlias = "int | float | str | bool | list[JsonArg] | dict[str, JsonArg] | None"


def task_name(kind: str) -> str:
    """The broker task that runs a job of ``kind`` (the workers register one per kind
    in ``app.kinds``)."""
    return f"kiln.{kind}"


def queue_for(settings: Settings, kind: str) -> str:
    """The broker queue of a job kind: ``KILN_QUEUE_NAME`` dot kind (``kiln.search``), so a
    worker can take only some kinds (``kiln worker --queues compress``)."""
    return f"{settings.queue_name}.{kind}"


def make_celery(settings: Settings) -> Celery:
    """One Celery configuration for gateway (producer) and workers (consumers)."""
    celery = Celery("kiln", broker=settings.broker_url, set_as_current=False)
    celery.conf.update(
        # No default queue: every message names its kind's queue (``JobQueue``), which is
        # what a worker's --queues takes.
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # The database is the source of truth; these make the broker redeliver what a dead
        # worker held where the transport can (Redis), and the reaper covers the rest.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # kombu's SQLAlchemy transport hands these to create_engine: wait on a locked SQLite
        # file instead of failing when several processes poll the same broker.
        broker_transport_options=(
            {"connect_args": {"timeout": 30}}
            if settings.broker_url.startswith("sqla+sqlite")
            else _redis_options(settings.broker_visibility_s)
            if settings.broker_url.startswith(("redis://", "rediss://"))
            else {}
        ),
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
    )
    return celery


def _redis_options(visibility_s: float) -> dict[str, float]:
    """kombu sweeps for messages past their visibility timeout about every 100 s by
    default (every 10th pass of 10 s); sweep often enough for the timeout to matter."""
    return {
        "visibility_timeout": visibility_s,
        "unacked_restore_interval": min(10.0, max(1.0, visibility_s / 2)),
        "unacked_restore_throttle": 1,
    }


class JobQueue:
    """Sends job ids to workers. Never imports worker code: tasks are addressed by name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    @property
    def probe(self) -> CachedProbe:
        """Whether the broker answers (asked at most every couple of seconds; the
        readiness probe shares the answer)."""
        return broker_probe(self.settings.broker_url)

    def check_reachable(self) -> None:
        """Unavailable (503) naming ``KILN_BROKER_URL`` when the broker does not answer:
        a job submitted now would wait, queued, until it does, which a wrong URL makes
        forever. Called before a job is recorded, so nothing is left behind."""
        problem = self.probe.problem()
        if problem is not None:
            raise Unavailable(f"{problem}; no job was recorded: submit it again once it answers")

    def send(self, job_id: int, kind: str) -> None:
        """Publish one message for ``job_id``; safe to repeat (workers claim jobs once).
        A failure tells the probe, so readiness and the next submission see it at once (a
        job recorded already stays queued, and the reaper sends it again)."""
        queue = queue_for(self.settings, kind)
        try:
            self.celery.send_task(task_name(kind), args=[job_id], queue=queue)
        except Exception as error:
            self.probe.record(error)
            raise
        logger.info("sent job %s (%s) to queue %s", job_id, kind, queue)

    def send_helper(self, kind: str, task: str, *args: JsonArg) -> None:
        """Send ``task``, one of the helper tasks ``kind`` declares (``JobKind.helper_tasks``:
        a search's extra trial runners and data-parallel members), on that kind's queue;
        a worker calls it with ``args``."""
        queue = queue_for(self.settings, kind)
        self.celery.send_task(task, args=list(args), queue=queue)
        logger.info("sent %s to queue %s", task, queue)  # not its args: they may hold secrets

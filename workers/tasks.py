"""Thin tasks: take a job id, hand it to the job runner with the kind's handler. One task
per job kind in ``app.kinds`` (``kiln.<kind>``), plus the search's helpers."""

from __future__ import annotations

from typing import Any

from celery import Task

from app.core.config import get_settings
from app.jobs.kinds import JobKind
from app.jobs.queue import SEARCH_HELPER_TASK, TRAIN_MEMBER_TASK
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.search.data_parallel import run_member
from app.search.study import run_search_helper
from workers.celery_app import celery_app


def _job_task(kind: JobKind[Any]) -> Task:
    """The task that runs jobs of ``kind``; a repeat of a claimed or finished job does
    nothing (the runner claims each job once), and a resumable kind resumes."""
    handler = kind.load_handler()

    def run(job_id: int) -> None:
        run_job(get_settings(), job_id, handler)

    run.__name__ = run.__qualname__ = kind.name
    run.__doc__ = f"Run {kind.name} job ``job_id``."
    return celery_app.task(name=kind.task_name, acks_late=True, reject_on_worker_lost=True)(run)


JOB_TASKS = {name: _job_task(kind) for name, kind in JOB_KINDS.items()}


@celery_app.task(name=SEARCH_HELPER_TASK, acks_late=True, reject_on_worker_lost=False)
def search_helper(job_id: int, slot: int) -> None:
    """Run trials of running search job ``job_id`` next to its main worker (parallelism)."""
    run_search_helper(get_settings(), job_id, slot)


@celery_app.task(name=TRAIN_MEMBER_TASK, acks_late=True, reject_on_worker_lost=False)
def train_member(message: dict[str, Any]) -> None:
    """Train a share of a data-parallel trial with its rank 0 (``app.search.data_parallel``)."""
    run_member(get_settings(), message)

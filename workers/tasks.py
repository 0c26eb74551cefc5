"""Thin tasks, all derived from ``app.kinds``: one per job kind (``kiln.<kind>``: take a job
id, hand it to the job runner with the kind's handler), and the helper tasks each kind
declares (``JobKind.helper_tasks``: a search's extra trial runners and data-parallel
members), each called with the worker's settings and the message's arguments."""

from __future__ import annotations

from typing import Any

from celery import Task

from app.core.config import get_settings
from app.jobs.kinds import HelperTask, JobKind
from app.jobs.queue import JsonArg
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from workers.celery_app import celery_app


def _job_task(kind: JobKind[Any, Any]) -> Task:
    """The task that runs jobs of ``kind``; a repeat of a claimed or finished job does
    nothing (the runner claims each job once), and a resumable kind resumes."""
    handler = kind.load_handler()

    def run(job_id: int) -> None:
        run_job(get_settings(), job_id, handler)

    run.__name__ = run.__qualname__ = kind.name
    run.__doc__ = f"Run {kind.name} job ``job_id``."
    return celery_app.task(name=kind.task_name, acks_late=True, reject_on_worker_lost=True)(run)


def _helper_task(name: str, helper: HelperTask) -> Task:
    """A helper task: it works beside a running job's main worker, which keeps the job's
    outcome; a helper lost with its worker is not run again (the main worker carries on
    without it, or the job's next attempt sends its own)."""

    def run(*args: JsonArg) -> None:
        helper(get_settings(), *args)

    run.__name__ = run.__qualname__ = name.rpartition(".")[2]
    run.__doc__ = helper.__doc__
    return celery_app.task(name=name, acks_late=True, reject_on_worker_lost=False)(run)


JOB_TASKS = {name: _job_task(kind) for name, kind in JOB_KINDS.items()}
HELPER_TASKS = {
    task: _helper_task(task, helper)
    for kind in JOB_KINDS.values()
    for task, helper in kind.load_helpers().items()
}

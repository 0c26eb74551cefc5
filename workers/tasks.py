"""Thin tasks: take a job id, hand it to the job runner with the domain handler."""

from __future__ import annotations

from typing import Any

from app.batch.job import run_batch_predict
from app.compression.job import run_compress
from app.config import get_settings
from app.jobs.runner import run_job
from app.search.data_parallel import run_member
from app.search.study import run_search, run_search_helper
from workers.celery_app import celery_app


@celery_app.task(name="kiln.search", acks_late=True, reject_on_worker_lost=True)
def search(job_id: int) -> None:
    """Run search job ``job_id``; does nothing if the job is already claimed or finished."""
    run_job(get_settings(), job_id, run_search)


@celery_app.task(name="kiln.search_helper", acks_late=True, reject_on_worker_lost=False)
def search_helper(job_id: int, slot: int) -> None:
    """Run trials of running search job ``job_id`` next to its main worker (parallelism)."""
    run_search_helper(get_settings(), job_id, slot)


@celery_app.task(name="kiln.train_member", acks_late=True, reject_on_worker_lost=False)
def train_member(message: dict[str, Any]) -> None:
    """Train a share of a data-parallel trial with its rank 0 (``app.search.data_parallel``)."""
    run_member(get_settings(), message)


@celery_app.task(name="kiln.compress", acks_late=True, reject_on_worker_lost=True)
def compress(job_id: int) -> None:
    """Run compression job ``job_id``; does nothing if it is already claimed or finished."""
    run_job(get_settings(), job_id, run_compress)


@celery_app.task(name="kiln.predict", acks_late=True, reject_on_worker_lost=True)
def predict(job_id: int) -> None:
    """Run batch prediction job ``job_id``; a repeat resumes after its last finished chunk."""
    run_job(get_settings(), job_id, run_batch_predict)

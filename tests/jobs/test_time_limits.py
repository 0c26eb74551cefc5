"""A job's hard time limit and its cancel act inside an epoch: training checks them at every
batch, the watcher sees a cancel within about a second, the lease is not renewed past the
deadline, and the reaper fails (not re-queues) a job whose time is up."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from app.contracts.enums import JobStatus
from app.contracts.networks import MLPConfig
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.jobs.queue import JobQueue
from app.jobs.reaper import reap
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, run_job
from app.tables import Job
from app.training.models import Network
from app.training.stopping import TrainingStopped, stop_checks
from app.training.train import TrainConfig, TrainData, train
from tests.api.test_jobs import broker_messages
from tests.conftest import make_settings
from tests.jobs.test_leases import LEASE, expire, load
from tests.jobs.test_leases import job_id as job_id


def _endless_epoch_data() -> TrainData:
    """Enough rows at batch size 2 that one epoch is thousands of steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return TrainData(x, y, x[:50], y[:50])


def _train_forever(epochs_seen: list[int]) -> None:
    network = Network(MLPConfig(8, 2, (64,)), classification=True)
    train(
        network,
        _endless_epoch_data(),
        TrainConfig(epochs=1000, learning_rate=0.01, batch_size=2),
        on_epoch=lambda epoch, _: epochs_seen.append(epoch),
    )


def test_a_stop_check_ends_training_inside_its_first_epoch() -> None:
    batches = 0
    epochs: list[int] = []

    def after_five_batches() -> None:
        nonlocal batches
        batches += 1
        if batches > 5:
            raise TrainingStopped("enough")

    with pytest.raises(TrainingStopped, match="enough"), stop_checks(after_five_batches):
        _train_forever(epochs)
    assert batches == 6 and epochs == []


def test_the_job_time_limit_stops_training_inside_an_epoch(settings: Settings, job_id: int) -> None:
    limited = make_settings(settings.data_dir, settings.database_url, max_job_s=1.0)
    epochs: list[int] = []

    def handler(context: JobContext):
        _train_forever(epochs)
        raise AssertionError("unreachable")

    run_job(limited, job_id, handler)
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED and epochs == []
    assert job.error == "the job reached its time limit of 1 s (KILN_MAX_JOB_S)"


def test_a_cancel_stops_training_inside_an_epoch(settings: Settings, job_id: int) -> None:
    epochs: list[int] = []
    started = threading.Event()

    def cancel_when_training() -> None:
        started.wait(60)
        with session_scope(settings.database_url) as session:
            session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.CANCELLED))

    def handler(context: JobContext):
        started.set()
        _train_forever(epochs)
        raise AssertionError("unreachable")

    canceller = threading.Thread(target=cancel_when_training)
    canceller.start()
    run_job(settings, job_id, handler)  # returns once the watcher has seen the cancel
    canceller.join()
    assert load(settings, job_id).status == JobStatus.CANCELLED and epochs == []


def test_a_job_past_its_deadline_fails_at_claim(settings: Settings, job_id: int) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(started_at=utcnow() - timedelta(seconds=settings.max_job_s + 5))
        )
    run_job(settings, job_id, lambda context: pytest.fail("must not run"))
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED and "time limit" in (job.error or "")


def test_the_reaper_fails_a_job_out_of_time_instead_of_requeueing(
    settings: Settings, job_id: int
) -> None:
    with session_scope(settings.database_url) as session:
        JobRepository(session).claim(job_id, worker="stuck", now=utcnow(), lease=LEASE)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(started_at=utcnow() - timedelta(seconds=settings.max_job_s + 5))
        )
        expire(session, job_id)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, JobQueue(settings)).failed == [job_id]
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED and job.attempt == 1
    assert job.error is not None and job.error.startswith(
        f"the job reached its time limit of {settings.max_job_s:g} s"
    )
    assert broker_messages(settings) == []


def test_a_crash_shows_a_reference_not_the_exception(settings: Settings, job_id: int) -> None:
    def handler(context: JobContext):
        raise RuntimeError("/srv/kiln/secret/path exploded")

    run_job(settings, job_id, handler)
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED and job.error is not None
    assert job.error.startswith("internal error (reference ") and "secret" not in job.error

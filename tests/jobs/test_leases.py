"""Claims, leases, the reaper and the job runner against the real database and broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.contracts.enums import JobStatus, TrialState
from app.contracts.results import StoredResult
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.datasets.service import create_dataset
from app.jobs.kinds import SubmitContext
from app.jobs.queue import JobQueue
from app.jobs.reaper import reap
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, JobFailed, run_job
from app.jobs.trial_repository import TrialRepository
from app.kinds import submit
from app.search.spec import SearchJobCreate
from app.storage import get_store
from app.tables import Job, Trial
from tests.api.test_jobs import broker_messages
from tests.helpers import blobs_csv

LEASE = timedelta(seconds=30)


@pytest.fixture
def job_id(settings: Settings, tmp_path) -> int:
    upload = tmp_path / "d.csv"
    upload.write_bytes(blobs_csv())
    with session_scope(settings.database_url) as session:
        dataset = create_dataset(
            session,
            get_store(settings),
            upload=upload,
            filename="d.csv",
            target="label",
            name=None,
            task=None,
            input_shape=None,
        )
        spec = SearchJobCreate(kind="search", dataset_id=dataset.id, model_name="m")
        job = submit(
            SubmitContext(session, JobQueue(settings), settings, get_store(settings)), spec
        )
        new_id = job.id
    broker_messages(settings)  # drain the submit message
    return new_id


def load(settings: Settings, job_id: int) -> Job:
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_only_one_claim_wins(settings: Settings, job_id: int) -> None:
    with session_scope(settings.database_url) as session:
        repo = JobRepository(session)
        assert repo.claim(job_id, worker="a", now=utcnow(), lease=LEASE)
        assert not repo.claim(job_id, worker="b", now=utcnow(), lease=LEASE)
    job = load(settings, job_id)
    assert (job.status, job.attempt, job.worker) == (JobStatus.RUNNING, 1, "a")


def test_renew_fails_once_cancelled(settings: Settings, job_id: int) -> None:
    with session_scope(settings.database_url) as session:
        repo = JobRepository(session)
        repo.claim(job_id, worker="a", now=utcnow(), lease=LEASE)
        assert repo.renew(job_id, attempt=1, now=utcnow(), lease=LEASE, progress_done=2)
        session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.CANCELLED))
        assert not repo.renew(job_id, attempt=1, now=utcnow(), lease=LEASE)


def expire(session: Session, job_id: int) -> None:
    session.execute(
        update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )


def test_reaper_requeues_a_lost_job_and_resends_it(settings: Settings, job_id: int) -> None:
    with session_scope(settings.database_url) as session:
        JobRepository(session).claim(job_id, worker="dead", now=utcnow(), lease=LEASE)
        session.add(
            Trial(
                job_id=job_id,
                number=0,
                attempt=1,
                state=TrialState.RUNNING,
                params={},
                intermediate=[],
            )
        )
        expire(session, job_id)
    with session_scope(settings.database_url) as session:
        report = reap(session, settings, JobQueue(settings))
    assert report.requeued == [job_id]
    job = load(settings, job_id)
    assert job.status == JobStatus.QUEUED and job.attempt == 1
    assert broker_messages(settings) == [{"task": "kiln.search", "args": [job_id]}]
    with session_scope(settings.database_url) as session:
        trials = TrialRepository(session).of_job(job_id)
    # On a requeue the trial stays until the next attempt sees its heartbeat go stale
    # (app.search.trials); only a job that fails for good marks its trials lost here.
    assert [trial.state for trial in trials] == [TrialState.RUNNING]


def test_reaper_fails_a_job_after_its_last_attempt(settings: Settings, job_id: int) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(attempt=settings.job_max_attempts - 1)
        )
        JobRepository(session).claim(job_id, worker="dead", now=utcnow(), lease=LEASE)
        expire(session, job_id)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, JobQueue(settings)).failed == [job_id]
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == ("worker lost: the lease expired on attempt 3 of 3; giving up")
    assert broker_messages(settings) == []


def test_reaper_resends_stale_queued_jobs_with_backoff(settings: Settings, job_id: int) -> None:
    queue = JobQueue(settings)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, queue).resent == []  # just sent: not stale yet
    later = utcnow() + timedelta(seconds=settings.queued_resend_s + 1)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, queue, now=later).resent == [job_id]
    with session_scope(settings.database_url) as session:  # backoff doubled: not yet again
        assert reap(session, settings, queue, now=later + timedelta(seconds=1)).resent == []
    assert broker_messages(settings) == [{"task": "kiln.search", "args": [job_id]}]


def test_runner_records_the_result_once(settings: Settings, job_id: int) -> None:
    calls: list[int] = []

    def handler(context: JobContext):
        calls.append(context.attempt)
        context.report(done=3, total=4)
        return lambda session: StoredResult.model_validate({"answer": 42})

    run_job(settings, job_id, handler)
    run_job(settings, job_id, handler)  # a duplicate delivery finds the job finished
    job = load(settings, job_id)
    assert calls == [1]
    assert (job.status, job.result, job.progress_done, job.progress_total) == (
        JobStatus.SUCCEEDED,
        {"answer": 42},
        3,
        4,
    )
    assert job.lease_expires_at is None and job.finished_at is not None


def test_runner_turns_errors_into_readable_failures(settings: Settings, job_id: int) -> None:
    def handler(context: JobContext):
        raise JobFailed("no trial completed")

    run_job(settings, job_id, handler)
    job = load(settings, job_id)
    assert (job.status, job.error) == (JobStatus.FAILED, "no trial completed")


def test_runner_stops_quietly_when_cancelled(settings: Settings, job_id: int) -> None:
    def handler(context: JobContext):
        with session_scope(settings.database_url) as session:
            session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.CANCELLED))
        context.report(done=1)  # notices the job is gone and raises JobLost
        raise AssertionError("unreachable")

    run_job(settings, job_id, handler)
    assert load(settings, job_id).status == JobStatus.CANCELLED


def test_a_database_outage_leaves_the_job_to_its_lease_not_failed(
    settings: Settings, job_id: int
) -> None:
    """The database stopped answering mid-job (here: raised by the handler, wrapped as a
    library wraps it): the job is not failed for it. It keeps its lease; when that lapses
    the reaper re-queues it, and the next attempt runs."""
    from sqlalchemy.exc import OperationalError

    def handler(context: JobContext):
        try:
            raise OperationalError("COMMIT", {}, ConnectionRefusedError("server closed"))
        except OperationalError as error:
            raise RuntimeError("storage commit failed") from error

    run_job(settings, job_id, handler)
    job = load(settings, job_id)
    assert (job.status, job.attempt, job.error) == (JobStatus.RUNNING, 1, None)
    with session_scope(settings.database_url) as session:
        expire(session, job_id)
    with session_scope(settings.database_url) as session:
        assert reap(session, settings, JobQueue(settings)).requeued == [job_id]
    run_job(
        settings,
        job_id,
        lambda context: lambda session: StoredResult.model_validate({"attempt": context.attempt}),
    )
    job = load(settings, job_id)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"attempt": 2})


def test_a_crash_that_is_not_the_database_fails_the_job_with_a_reference(
    settings: Settings, job_id: int
) -> None:
    def handler(context: JobContext):
        raise RuntimeError("a bug")

    run_job(settings, job_id, handler)
    job = load(settings, job_id)
    assert job.status == JobStatus.FAILED and "internal error (reference" in (job.error or "")


def test_a_trial_number_is_claimed_by_one_worker_and_the_slot_goes_back(
    settings: Settings, job_id: int
) -> None:
    """Two workers' asks can pop one queued Optuna trial (on SQLite its claim is a read,
    then a write): the trial's row is the claim, and the loser writes nothing."""
    with session_scope(settings.database_url) as session:
        trials = TrialRepository(session)
        assert trials.take_slot(job_id, budget=3) and trials.take_slot(job_id, budget=3)
        first = trials.start(job_id, 7, params={"a": 1}, worker="w1", retry_of=None)
        assert first is not None
    with session_scope(settings.database_url) as session:
        trials = TrialRepository(session)
        assert trials.start(job_id, 7, params={"a": 2}, worker="w2", retry_of=None) is None
        trials.give_back_slot(job_id)
        assert trials.start(job_id, 8, params={"a": 3}, worker="w2", retry_of=None) is not None
    with session_scope(settings.database_url) as session:
        rows = {t.number: t.worker for t in TrialRepository(session).of_job(job_id)}
        assert rows == {7: "w1", 8: "w2"}  # the loser's session went on; the winner's row kept
        assert TrialRepository(session).slots_taken(job_id) == 1

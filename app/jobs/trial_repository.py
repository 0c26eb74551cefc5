"""SQL for a search's trials and the job counters they move: the budget's slots (taken by
a conditional update, so worker processes never overspend it), trial rows that mirror
Optuna's, and the progress and best value the job shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.contracts.enums import TrialState
from app.core.db import rows_changed, utcnow
from app.core.repository import Repository
from app.tables import Job, Trial


class TrialRepository(Repository[Trial]):
    """Queries over the trials of search jobs."""

    row_type = Trial
    noun = "trial"

    def of_job(self, job_id: int, *, state: TrialState | None = None) -> list[Trial]:
        """The job's trials (of one state when given), in trial order."""
        where = [Trial.job_id == job_id] + ([Trial.state == state] if state else [])
        return list(self.session.scalars(select(Trial).where(*where).order_by(Trial.number)))

    def id_of(self, job_id: int, number: int) -> int | None:
        found: int | None = self.session.scalar(
            select(Trial.id).where(Trial.job_id == job_id, Trial.number == number)
        )
        return found

    def spans(self, job_id: int) -> list[tuple[datetime, datetime]]:
        """When each finished trial started and ended."""
        rows = self.session.execute(
            select(Trial.started_at, Trial.finished_at).where(
                Trial.job_id == job_id, Trial.finished_at.is_not(None)
            )
        )
        return [(start, end) for start, end in rows.tuples() if end is not None]

    # budget slots ------------------------------------------------------------------------
    def take_slot(self, job_id: int, budget: int) -> bool:
        """Claim one of the job's ``budget`` trial slots; False when all are taken."""
        return bool(
            rows_changed(
                self.session,
                update(Job)
                .where(Job.id == job_id, Job.trial_slots < budget)
                .values(trial_slots=Job.trial_slots + 1)
                .execution_options(synchronize_session=False),
            )
        )

    def give_back_slot(self, job_id: int) -> None:
        """Return a slot taken for a trial this worker did not run."""
        rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.trial_slots > 0)
            .values(trial_slots=Job.trial_slots - 1)
            .execution_options(synchronize_session=False),
        )

    def slots_taken(self, job_id: int) -> int:
        return self.session.scalar(select(Job.trial_slots).where(Job.id == job_id)) or 0

    # rows ---------------------------------------------------------------------------------
    def start(
        self, job_id: int, number: int, *, params: dict[str, Any], worker: str, retry_of: int | None
    ) -> Trial | None:
        """The running row of a trial, under the job's current attempt, written in a
        savepoint; None, and nothing written, when the job already has a row of that
        number (another worker claimed the trial first)."""
        attempt = self.session.scalar(select(Job.attempt).where(Job.id == job_id)) or 0
        trial = Trial(
            job_id=job_id,
            number=number,
            attempt=attempt,
            state=TrialState.RUNNING,
            params=params,
            intermediate=[],
            worker=worker,
            started_at=utcnow(),
            retry_of=retry_of,
        )
        try:
            with self.session.begin_nested():
                self.session.add(trial)
        except IntegrityError:
            return None
        return trial

    def end(self, job_id: int, number: int, state: TrialState, **fields: Any) -> bool:
        """running -> ``state`` with ``fields``; False when the row was no longer running
        (marked lost meanwhile)."""
        return bool(
            rows_changed(
                self.session,
                update(Trial)
                .where(
                    Trial.job_id == job_id,
                    Trial.number == number,
                    Trial.state == TrialState.RUNNING,
                )
                .values(state=state, finished_at=utcnow(), **fields)
                .execution_options(synchronize_session=False),
            )
        )

    def count_progress(self, job_id: int) -> None:
        """Set the job's ``progress_done``: its finished trials, at most the slots taken."""
        counted = self.slots_taken(job_id)
        finished = (
            self.session.scalar(
                select(func.count())
                .select_from(Trial)
                .where(Trial.job_id == job_id, Trial.state != TrialState.RUNNING)
            )
            or 0
        )
        rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id)
            .values(progress_done=min(finished, counted), updated_at=utcnow())
            .execution_options(synchronize_session=False),
        )

    def offer_best(self, job_id: int, value: float, *, maximize: bool) -> None:
        """Make ``value`` the job's best when it beats the stored one (or none is)."""
        better = Job.best_value < value if maximize else Job.best_value > value
        rows_changed(
            self.session,
            update(Job)
            .where(Job.id == job_id, Job.best_value.is_(None) | better)
            .values(best_value=value)
            .execution_options(synchronize_session=False),
        )

    def mark_lost(self, job_id: int, now: datetime, reason: str, number: int | None = None) -> int:
        """Running trials of the job (one, by ``number``) -> lost; how many."""
        where = [Trial.job_id == job_id, Trial.state == TrialState.RUNNING]
        if number is not None:
            where.append(Trial.number == number)
        return rows_changed(
            self.session,
            update(Trial)
            .where(*where)
            .values(state=TrialState.LOST, finished_at=now, error=reason)
            .execution_options(synchronize_session=False),
        )

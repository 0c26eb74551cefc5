"""Which trials a search registers: the best complete one, or every Pareto-optimal one when
there are several objectives; how the winner was chosen; and why none was, when none was.
Read from the job's trial rows once the trials are done."""

from __future__ import annotations

from app.contracts.enums import TrialState
from app.contracts.results import Selection
from app.core.db import session_scope
from app.jobs.trial_repository import TrialRepository
from app.search.plan import most_at_once
from app.search.run import SearchRun
from app.search.selection import best_of, within_noise
from app.search.trial_metrics import TrialMetrics
from app.tables import Trial


def dominates(a: list[float], b: list[float], maximize: list[bool]) -> bool:
    better_or_equal = all(
        (x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize, strict=True)
    )
    return better_or_equal and a != b


def complete_trials(run: SearchRun) -> list[Trial]:
    """The job's complete trials with values, in trial order (read once per finalize)."""
    with session_scope(run.settings.database_url) as session:
        return [
            t
            for t in TrialRepository(session).of_job(run.job_id, state=TrialState.COMPLETE)
            if t.values
        ]


def winners(run: SearchRun, complete: list[Trial]) -> list[Trial]:
    """The best complete trial, or every Pareto-optimal one (multi-objective)."""
    if not complete:
        return []
    maximize = [objective.maximize for objective in run.plan.objectives]
    if len(maximize) == 1:
        return [best_of(complete, maximize[0], run.dataset.task)]
    front = [
        t
        for t in complete
        if not any(
            dominates(o.values, t.values, maximize)  # type: ignore[arg-type]
            for o in complete
        )
    ]
    return sorted(front, key=lambda t: t.values[0], reverse=maximize[0])  # type: ignore[index]


def failure_reason(run: SearchRun) -> str:
    with session_scope(run.settings.database_url) as session:
        rows = TrialRepository(session).of_job(run.job_id)
    errors = [row.error for row in rows if row.error]
    if not rows:
        return "no trial ran before timeout_s ran out"
    reason = f"no trial completed ({len(rows)} ran); last error: {errors[-1] if errors else '?'}"
    if all(row.state == TrialState.STOPPED for row in rows):  # the budget, not a fault
        reason += (
            "; every trial was stopped by the time budget: submit it again with a larger "
            "search.timeout_s (a busy machine fits fewer trials in it)"
        )
    return reason


def trials_at_once(run: SearchRun) -> int:
    """The most of this job's trials that ran at one moment (what ``parallelism`` became
    with the worker processes there were)."""
    with session_scope(run.settings.database_url) as session:
        return most_at_once(TrialRepository(session).spans(run.job_id))


def selection_summary(run: SearchRun, winner: Trial, complete: list[Trial]) -> Selection:
    """How the winner was chosen, and how far ahead of the rest it really was."""
    rows = len(run.splits.train) + len(run.splits.validation)
    metrics = TrialMetrics.of_trial(winner)
    if run.folds is None:
        return Selection(
            validation="holdout",
            validation_rows=len(run.splits.validation),
            refit_on_rows=rows,
            refit_epochs=metrics.refit_epochs,
        )
    same = next(t for t in complete if t.number == winner.number)
    return Selection(
        validation=f"{len(run.folds)}-fold cross-validation",
        validation_rows=rows,
        winner_fold_std=metrics.cv_std,
        trials_within_noise=within_noise(complete, same),
        refit_on_rows=rows,
        refit_epochs=metrics.refit_epochs,
    )

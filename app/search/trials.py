"""The trial loop every worker process of a search runs against the shared Optuna study:
take a budget slot, ask, train with per-epoch reports (and pruning), measure, tell.

The registry's ``trials`` rows mirror Optuna's trials for the API; Optuna's heartbeats find
trials whose worker died, and the stale-trial callback marks their rows ``lost`` and queues
a retry (``search.max_retries``)."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState
from pydantic import BaseModel

from app.contracts.enums import TrialState
from app.contracts.params import ParamValue
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.core.errors import KilnError
from app.jobs.runner import JobLost
from app.jobs.trial_repository import TrialRepository
from app.search.fit import Measured, train_trial
from app.search.fit_tables import train_table_trial
from app.search.run import Infeasible, SearchRun
from app.search.schedule_study import schedule_next, training_subset
from app.search.space import suggest
from app.search.trial_metrics import TrialMetrics
from app.training.families.registry import family_named
from app.training.stopping import TrainingStopped, stop_checks

logger = logging.getLogger(__name__)
DEADLINE_RECHECK_S = 1.0  # how often a running trial re-reads the search's deadline


class RetryAttrs(BaseModel):
    """What a re-run of lost trials records among its Optuna system attributes: the
    numbers of the runs it re-runs, oldest first, and the first of them (the other
    attributes are Optuna's own)."""

    retry_history: list[int] = []
    failed_trial: int | None = None


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float] | None = None,
    state: OptunaState | None = None,
) -> None:
    """``study.tell``; the grid sampler's ``study.stop()`` when its grid is exhausted is
    meant for ``optimize`` loops and raises here after the result is stored: ignore it."""
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def stale_trial_handler(
    settings: Settings, job_id: int, max_retries: int
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Mark a trial whose worker stopped heartbeating ``lost``, then maybe queue a retry."""

    def retry(study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the same parameters as a waiting trial that records whom it re-runs
        (``retry_history``, oldest first), unless ``max_retries`` runs were lost already."""
        earlier = RetryAttrs.model_validate(trial.system_attrs)
        history = [*earlier.retry_history, trial.number]
        if len(history) > max_retries:
            return
        first = earlier.failed_trial if earlier.failed_trial is not None else trial.number
        study.add_trial(
            optuna.trial.create_trial(
                state=OptunaState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=trial.user_attrs,
                system_attrs={
                    **trial.system_attrs,
                    "retry_history": history,
                    "failed_trial": first,
                },
            )
        )

    def handle(study: optuna.Study, trial: FrozenTrial) -> None:
        with session_scope(settings.database_url) as session:
            TrialRepository(session).mark_lost(
                job_id,
                utcnow(),
                "its worker stopped heartbeating (killed or hung)",
                number=trial.number,
            )
        retry(study, trial)
        logger.warning("trial %s of job %s lost its worker", trial.number, job_id)

    return handle


class Heartbeat(threading.Thread):
    """Records the trial's heartbeat in the study storage until stopped."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{trial_id}", daemon=True)
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:
                logger.exception("heartbeat of trial id %s failed", self.trial_id)
            if self.done.wait(self.interval):
                return


# -- budget -------------------------------------------------------------------------------
def _take_slot(run: SearchRun) -> bool:
    """Claim one trial of the ``max_trials`` budget; atomic across worker processes."""
    with session_scope(run.settings.database_url) as session:
        return TrialRepository(session).take_slot(run.job_id, run.budget)


def _slots_left(run: SearchRun) -> int:
    with session_scope(run.settings.database_url) as session:
        used = TrialRepository(session).slots_taken(run.job_id)
    return run.budget - used


def _trials(run: SearchRun, *states: OptunaState) -> list[FrozenTrial]:
    return run.study.get_trials(deepcopy=False, states=states)


def _out_of_time(run: SearchRun) -> bool:
    return run.deadline is not None and utcnow() >= run.deadline


# -- rows -----------------------------------------------------------------------------------
def _start_row(
    run: SearchRun, trial: optuna.Trial, params: dict[str, ParamValue], retry_of: int | None
) -> bool:
    """Claim the trial by writing its running row; False when another worker holds it.

    Two workers' asks can both pop one queued trial: Optuna claims a waiting trial by
    reading its state and then writing it, and SQLite takes no row lock between the two.
    The row's unique (job, number) is the claim that holds on every database."""
    with session_scope(run.settings.database_url) as session:
        started = TrialRepository(session).start(
            run.job_id, trial.number, params=params, worker=run.worker, retry_of=retry_of
        )
    return started is not None


def _end_row(
    run: SearchRun,
    number: int,
    state: TrialState,
    *,
    started: float,
    values: list[float] | None = None,
    metrics: TrialMetrics | None = None,
    history: list[float] | None = None,
    error: str | None = None,
    digests: Measured | None = None,
) -> None:
    with session_scope(run.settings.database_url) as session:
        trials = TrialRepository(session)
        trials.end(
            run.job_id,
            number,
            state,
            value=values[0] if values else None,
            values=values,
            metrics=metrics.stored() if metrics is not None else None,
            checkpoint_sha256=digests.checkpoint_sha256 if digests else None,
            predictions_sha256=digests.predictions_sha256 if digests else None,
            intermediate=history or [],
            error=error,
            duration_s=time.perf_counter() - started,
        )
        trials.count_progress(run.job_id)
        if state == TrialState.COMPLETE and values:
            trials.offer_best(run.job_id, values[0], maximize=run.plan.objectives[0].maximize)


# -- one trial ------------------------------------------------------------------------------
def _trial_clock(run: SearchRun) -> Callable[[], None]:
    """The per-batch check of one trial's time: its own limit and the search's deadline."""
    limit = run.trial_limit_s
    ends = time.monotonic() + limit

    def search_end() -> float:  # the deadline moves as the finish is re-planned
        deadline = run.deadline
        return (
            math.inf
            if deadline is None
            else time.monotonic() + (deadline - utcnow()).total_seconds()
        )

    search_ends, recheck_at = search_end(), time.monotonic() + DEADLINE_RECHECK_S

    def check() -> None:
        nonlocal search_ends, recheck_at
        now = time.monotonic()
        if now >= recheck_at:
            search_ends, recheck_at = search_end(), now + DEADLINE_RECHECK_S
        if now >= ends:
            raise TrainingStopped(
                f"stopped at the trial time limit of {limit:g} s "
                "(search.trial_timeout_s or KILN_MAX_TRIAL_S)"
            )
        if now >= search_ends:
            raise TrainingStopped(
                "stopped when the search's time ran out (search.timeout_s or KILN_MAX_JOB_S)"
            )

    return check


def run_one(run: SearchRun, trial: optuna.Trial, keep_going: Callable[[], None]) -> bool:
    """Train, measure and record one asked trial (its budget slot is already taken);
    False when another worker had claimed it (nothing was run or recorded)."""
    history = RetryAttrs.model_validate(
        run.storage.get_trial_system_attrs(trial._trial_id)
    ).retry_history
    try:
        params = suggest(trial, run.plan.space, tied_layers=run.tied_layers)
    except optuna.exceptions.UpdateFinishedTrialError:  # popped twice: the other one ran it
        logger.info("job %s trial %s is another worker's: skipped", run.job_id, trial.number)
        return False
    if not _start_row(run, trial, params, retry_of=history[-1] if history else None):
        logger.info("job %s trial %s is another worker's: skipped", run.job_id, trial.number)
        return False
    shadow = run.pruning.ask() if run.pruning is not None else None
    started = time.perf_counter()
    scores: list[float] = []
    beat = Heartbeat(run.storage, trial._trial_id, run.settings.trial_heartbeat_s)
    beat.start()
    family = run.plan.space.family_of(params)
    network = family_named(family).trains_network
    trains = train_trial if network else train_table_trial
    try:
        rows = training_subset(run, family)
        with stop_checks(_trial_clock(run)):
            outcome = trains(run, trial, shadow, params, keep_going, scores, rows)
    except optuna.TrialPruned as pruned:
        _finish(run, trial, shadow, OptunaState.PRUNED)
        _end_row(
            run, trial.number, TrialState.PRUNED, started=started, history=scores, error=str(pruned)
        )
        return True
    except Infeasible as infeasible:
        _finish(run, trial, shadow, OptunaState.FAIL)
        _end_row(
            run,
            trial.number,
            TrialState.INFEASIBLE,
            started=started,
            history=scores,
            error=str(infeasible),
        )
        return True
    except TrainingStopped as stopped:  # a time limit, not a fault: the trial is stopped
        _finish(run, trial, shadow, OptunaState.FAIL)
        _end_row(
            run,
            trial.number,
            TrialState.STOPPED,
            started=started,
            history=scores,
            error=f"{stopped} {f'during epoch {len(scores) + 1}' if network else 'while fitting'}",
        )
        return True
    except JobLost:
        _finish(run, trial, shadow, OptunaState.FAIL)
        _end_row(
            run,
            trial.number,
            TrialState.FAILED,
            started=started,
            history=scores,
            error="the job stopped (cancelled or taken over) while this trial ran",
        )
        raise
    except Exception as error:  # one bad configuration must not end the search
        _finish(run, trial, shadow, OptunaState.FAIL)
        _end_row(
            run,
            trial.number,
            TrialState.FAILED,
            started=started,
            history=scores,
            error=trial_error(run, trial.number, error),
        )
        return True
    finally:
        beat.done.set()
    measured = outcome.metrics
    values = measured.objective_values([objective.metric for objective in run.plan.objectives])
    tell(run.study, trial, values)
    if shadow is not None and run.pruning is not None:
        pruning_value = measured.value(run.plan.pruning_metric)
        run.pruning.tell(shadow, values[0] if pruning_value is None else pruning_value)
    _end_row(
        run,
        trial.number,
        TrialState.COMPLETE,
        started=started,
        values=values,
        metrics=measured,
        history=scores,
        digests=outcome,
    )
    return True


def trial_error(run: SearchRun, number: int, error: Exception) -> str:
    """What a failed trial shows in the API and the dashboard: our own errors' messages
    (written for the user: their data, their spec), else a reference to the worker's log,
    which has the traceback (exception text can carry paths and addresses)."""
    if isinstance(error, KilnError):
        return error.message[:2000]
    reference = uuid.uuid4().hex[:12]
    logger.error(
        "job %s trial %s failed (reference %s)", run.job_id, number, reference, exc_info=error
    )
    return f"{type(error).__name__} (reference {reference}); the worker's log has the details"


def _finish(
    run: SearchRun, trial: optuna.Trial, shadow: optuna.Trial | None, state: OptunaState
) -> None:
    tell(run.study, trial, state=state)
    if shadow is not None and run.pruning is not None:
        run.pruning.tell(shadow, state=state)


# -- the loop ------------------------------------------------------------------------------
def run_trials(run: SearchRun, keep_going: Callable[[], None]) -> None:
    """Run trials until the budget or the time is spent (retries of lost trials included)."""
    while True:
        keep_going()
        optuna.storages.fail_stale_trials(run.study)
        if _out_of_time(run):
            return
        waiting = _trials(run, OptunaState.WAITING)
        if not waiting and _slots_left(run) <= 0:
            return
        if not waiting:
            schedule_next(run)  # several families: the next trial's, by expected gain
        trial = run.study.ask()
        run.storage.record_heartbeat(trial._trial_id)  # from now on a death is noticed
        is_retry = "failed_trial" in run.storage.get_trial_system_attrs(trial._trial_id)
        if not is_retry and not _take_slot(run):
            trial.set_user_attr("not_run", "the trial budget was spent by other workers")
            tell(run.study, trial, state=OptunaState.FAIL)
            return
        if not run_one(run, trial, keep_going) and not is_retry:
            with session_scope(run.settings.database_url) as session:
                TrialRepository(session).give_back_slot(run.job_id)


def wait_for_others(run: SearchRun, keep_going: Callable[[], None], poll_s: float = 1.0) -> None:
    """After this worker's loop: wait for trials other workers still run; run the retries
    of any that died (their heartbeat goes stale) while time remains."""
    while True:
        keep_going()
        optuna.storages.fail_stale_trials(run.study)
        if _trials(run, OptunaState.WAITING) and not _out_of_time(run):
            run_trials(run, keep_going)
            continue
        if not _trials(run, OptunaState.RUNNING):
            return
        time.sleep(poll_s)

"""The family scheduler (``app.search.schedule``) applied to a running search: the job's
trial rows read as its summary, the chosen family queued in the shared Optuna study before
the next ``ask`` (only the family, and a network's cheap first configuration, are fixed:
the sampler chooses the rest), and the training rows a trial fits on.

A search schedules its families when it has several, one objective, and a sampler that is
not a grid (a grid covers one family; several objectives are left to their sampler)."""

from __future__ import annotations

import logging
import math

import numpy as np

from app.contracts.enums import TrialState
from app.contracts.params import ParamValue
from app.core.db import session_scope, utcnow
from app.jobs.trial_repository import TrialRepository
from app.search.left_out import TableSize, first_trial_seconds, left_out_families
from app.search.run import SearchRun
from app.search.schedule import (
    LARGE_TABLE_ROWS,
    SUBSAMPLE_ROWS,
    SearchState,
    TrialRecord,
    cheap_start,
    choose_family,
    train_on_subsample,
)
from app.search.selection import stratified_subsample
from app.search.space import FAMILY_KEY, data_shape
from app.search.trial_metrics import TrialMetrics
from app.tables import Trial
from app.training.families.registry import Family, family_named

logger = logging.getLogger(__name__)

CHOSEN_ATTR = "family_chosen"  # the user attribute that says why a trial's family was chosen


def schedules(run: SearchRun) -> bool:
    """Whether this search's families are chosen by the scheduler."""
    return (
        len(run.plan.space.searched) > 1
        and not run.plan.multi_objective
        and run.spec.algorithm != "grid"
    )


def subsamples(run: SearchRun) -> bool:
    """Whether early trials may fit on a subsample: a scheduled search of a large table
    scored on the holdout, one process a trial (data-parallel members read every row)."""
    non_test = len(run.splits.train) + len(run.splits.validation)
    return (
        schedules(run)
        and run.folds is None
        and run.spec.data_parallel == 1
        and non_test > LARGE_TABLE_ROWS
        and len(run.data.y_train) > SUBSAMPLE_ROWS
    )


def table_size(run: SearchRun) -> TableSize:
    """What the left-out note and the first-trial estimates read of the search's data."""
    shape = data_shape(run.dataset.input_shape)
    return TableSize(
        task=run.dataset.task,
        shape=shape,
        non_test_rows=len(run.splits.train) + len(run.splits.validation),
        features=len(run.dataset.feature_names),
        outputs=len(run.dataset.class_labels) if run.dataset.class_labels else 1,
        pixels=math.prod(run.dataset.input_shape or []) if shape == "images" else 0,
    )


def _record(run: SearchRun, row: Trial, now_s: float) -> TrialRecord:
    started = row.started_at.timestamp()
    ended = row.finished_at.timestamp() if row.finished_at is not None else math.inf
    seconds = row.duration_s if row.duration_s is not None else max(0.0, now_s - started)
    return TrialRecord(
        family=str(run.plan.space.family_of(row.params or {})),
        state=TrialState(row.state),
        seconds=seconds,
        value=row.value,
        train_rows=TrialMetrics.of_trial(row).train_rows,
        ended=ended,
    )


def search_state(run: SearchRun) -> SearchState:
    """The scheduler's view of the search now (one read of the job's trial rows)."""
    with session_scope(run.settings.database_url) as session:
        rows = TrialRepository(session).of_job(run.job_id)
        now = utcnow()
        records = tuple(_record(run, row, now.timestamp()) for row in rows)
    families = tuple(str(family) for family in run.plan.space.searched)
    size = table_size(run)
    estimates = {
        family: seconds
        for family in families
        if (seconds := first_trial_seconds(family, size, run.spec.max_epochs)) is not None
    }
    left_out = {note.family for note in left_out_families(run.spec, families, size)}
    return SearchState(
        families=families,
        trials=records,
        maximize=run.plan.objectives[0].maximize,
        seconds_left=None if run.deadline is None else (run.deadline - now).total_seconds(),
        training_rows=len(run.data.y_train),
        subsample_rows=SUBSAMPLE_ROWS if subsamples(run) else None,
        first_trial_s=estimates,
        left_out=frozenset(left_out) & frozenset(families),
    )


def schedule_next(run: SearchRun) -> None:
    """Queue the family the next trial should come from (nothing for a search the
    scheduler leaves alone, or when it leaves the choice to the sampler)."""
    if not schedules(run):
        return
    try:
        choice = choose_family(search_state(run))
    except Exception:  # the sampler then chooses: a search never ends for its scheduler
        logger.exception("job %s: choosing the next trial's family failed", run.job_id)
        return
    if choice is None:
        return
    params: dict[str, ParamValue] = {FAMILY_KEY: choice.family}
    if choice.cheap_start and family_named(choice.family).trains_network:
        params |= cheap_start(run.plan.space.dimensions_of(Family(choice.family)))
    reason = f"{choice.reason}{'; on a subsample' if choice.subsample else ''}"
    # Not skip_if_exists: it would refuse a family queued before with the same fixed values.
    run.study.enqueue_trial(params, user_attrs={CHOSEN_ATTR: reason})
    logger.info("job %s: next trial from %s (%s)", run.job_id, choice.family, reason)


def training_subset(run: SearchRun, family: Family) -> np.ndarray | None:
    """The positions among the training rows a trial of ``family`` fits on (stratified,
    the same for every trial of the search), or None: every training row."""
    if not subsamples(run) or not train_on_subsample(search_state(run), str(family)):
        return None
    return stratified_subsample(run.data.y_train, run.dataset.task, SUBSAMPLE_ROWS, run.spec.seed)

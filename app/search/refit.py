"""A winning trial fitted again, whatever its family: on every non-test row (the model the
test rows score) and, when the search refits in full, on every labelled row (the model that
serves); and the average of several winners (an ``Ensemble`` of networks, or a
``MixedAverage`` across families)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from app.search.fit import build_network
from app.search.fit_tables import fit_family
from app.search.run import SearchRun
from app.search.trial_metrics import TrialMetrics
from app.tables import Trial
from app.training.ensemble import Ensemble, MixedAverage
from app.training.families.registry import family_named
from app.training.models import Network
from app.training.table_models import TableData, TableModel
from app.training.train import TrainData, train

# Which rows a refit trains on: the non-test rows (training and validation splits), or
# every labelled row (the test split too).
FitRows = Literal["non_test", "all"]


def rows_of(run: SearchRun, which: FitRows) -> np.ndarray:
    """The row indices a refit of ``which`` rows trains on, in order."""
    parts = [run.splits.train, run.splits.validation]
    if which == "all":
        parts.append(run.splits.test)
    return np.sort(np.concatenate(parts))


def refit(
    run: SearchRun, trial: Trial, keep_going: Callable[[], None], which: FitRows = "non_test"
) -> Network | TableModel:
    """The trial's configuration trained again on ``which`` rows, for the epochs (or
    boosting rounds) its validation found: the folds' mean, or the holdout's best. No early
    stopping: no validation rows are left."""
    if not family_named(run.plan.space.family_of(trial.params or {})).trains_network:
        return refit_table_trial(run, trial, keep_going, which)
    network, training = build_network(run, trial.params, seed=run.spec.seed + trial.number)
    epochs = int((trial.metrics or {}).get("refit_epochs", training.epochs))
    rows = rows_of(run, which)
    features, target = run.arrays.features, run.arrays.target
    data = TrainData(
        x_train=features[rows],
        y_train=target[rows],
        x_val=features[run.splits.validation],
        y_val=target[run.splits.validation],
    )
    train(
        network, data, dataclasses.replace(training, epochs=epochs, patience=0, restore_best=False)
    )
    return network


def averaged(
    members: list[Network | TableModel], weights: list[float] | None = None
) -> Ensemble | MixedAverage:
    """One model averaging ``members`` (by ``weights``): an Ensemble when all are networks."""
    networks = [member for member in members if isinstance(member, Network)]
    if len(networks) == len(members):
        return Ensemble(networks, weights)
    return MixedAverage(members, weights)


def refit_table_trial(
    run: SearchRun, trial: Trial, keep_going: Callable[[], None], which: FitRows
) -> TableModel:
    """The trial's configuration fitted again on ``which`` rows, for the rounds its
    validation found."""
    params = trial.params or {}
    family = run.plan.space.family_of(params)
    rows = rows_of(run, which)
    data = TableData(run.arrays.features[rows], run.arrays.target[rows])
    rounds = TrialMetrics.of_trial(trial).refit_epochs or None
    return fit_family(
        run,
        family,
        params,
        data,
        seed=run.spec.seed + trial.number,
        keep_going=keep_going,
        rounds=rounds,
    )

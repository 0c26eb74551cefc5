"""A winning trial fitted again on every non-test row, whatever its family, and the average
of several winners (an ``Ensemble`` of networks, or a ``MixedAverage`` across families)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from app.search.fit import build_network
from app.search.fit_tables import refit_table_trial
from app.search.run import SearchRun
from app.tables import Trial
from app.training.ensemble import Ensemble, MixedAverage
from app.training.families.registry import family_named
from app.training.models import Network
from app.training.table_models import TableModel
from app.training.train import TrainData, train


def refit(run: SearchRun, trial: Trial, keep_going: Callable[[], None]) -> Network | TableModel:
    """The trial's configuration trained again on every non-test row (training and
    validation split), for the epochs (or boosting rounds) its validation found: the
    folds' mean, or the holdout's best. No early stopping: no validation rows are left."""
    if not family_named(run.plan.space.family_of(trial.params or {})).trains_network:
        return refit_table_trial(run, trial, keep_going)
    network, training = build_network(run, trial.params, seed=run.spec.seed + trial.number)
    epochs = int((trial.metrics or {}).get("refit_epochs", training.epochs))
    rows = np.sort(np.concatenate([run.splits.train, run.splits.validation]))
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

"""Choosing a search's winner so that it holds up on rows it never saw.

On small data one validation split is too noisy to rank trials on: with 64 validation rows
one row is 1.6 points of accuracy, many configurations tie at the top, and the more trials
a search runs the more surely it picks one that fits those rows' noise. There, every trial
is scored by k-fold cross-validation over all non-test rows, and the winner is refit on all
of them for the epoch count its folds found. On larger data the holdout split stays (its
noise is small next to the cost of k trainings).

Ties in the objective are broken by a proper scoring rule (log loss, or RMSE), then by size,
never by trial order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.contracts.enums import Task
from app.datasets.splits import SplitIndices, fold_indices
from app.evaluation.metrics import quality_score
from app.search.trial_metrics import TrialMetrics
from app.tables import Trial
from app.training.train import TrainData

# Trials are cross-validated up to ``CV_MAX_ROWS`` (2,000) non-test rows: the holdout would
# then have at most 300 rows, where one accuracy standard error (p = 0.9) is still 1.7 points
# or more.
CV_FOLDS = 5
TIE = 1e-9
SUBSAMPLE_STRATA = 10  # a regression target's subsample keeps each decile's share


@dataclass(frozen=True)
class Folds:
    """The non-test rows cut for cross-validation. ``rows`` (sorted) are what a trial's
    out-of-fold predictions cover; ``positions[i]`` places fold i's validation rows in it."""

    data: list[TrainData]
    rows: np.ndarray
    positions: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.data)


def fold_data(
    features: np.ndarray, target: np.ndarray, task: Task, splits: SplitIndices, seed: int
) -> Folds:
    """The non-test rows as ``CV_FOLDS`` training/validation pairs (stratified)."""
    rows = np.sort(np.concatenate([splits.train, splits.validation]))
    pairs = fold_indices(target, task, rows, CV_FOLDS, seed, groups=splits.groups)
    return Folds(
        data=[
            TrainData(
                x_train=features[train],
                y_train=target[train],
                x_val=features[val],
                y_val=target[val],
            )
            for train, val in pairs
        ],
        rows=rows,
        positions=[np.searchsorted(rows, val) for _, val in pairs],
    )


def stratified_subsample(target: np.ndarray, task: str, count: int, seed: int) -> np.ndarray:
    """``count`` positions of ``target``'s rows (sorted), drawn with each stratum's share
    kept: a class's rows (classification; every class present keeps one row at least),
    or a decile of the target (regression). All positions when there are no more rows
    than ``count``. What a large table's early trials fit on (``app.search.schedule``)."""
    rows = len(target)
    if count >= rows:
        return np.arange(rows)
    if task == Task.CLASSIFICATION:
        strata = np.asarray(target, dtype=np.int64)
    else:
        edges = np.quantile(target, np.linspace(0.0, 1.0, SUBSAMPLE_STRATA + 1)[1:-1])
        strata = np.searchsorted(edges, target, side="right")
    labels, sizes = np.unique(strata, return_counts=True)
    wanted = sizes * (count / rows)
    taken = np.maximum(np.floor(wanted).astype(np.int64), 1 if task == Task.CLASSIFICATION else 0)
    for index in np.argsort(-(wanted - np.floor(wanted)), kind="stable"):
        if taken.sum() >= count:
            break
        taken[index] += 1  # the largest remainders get the rows left over
    while taken.sum() > count:  # classes kept at one row each took more than their share
        largest = int(np.argmax(taken))
        taken[largest] -= 1
    generator = np.random.default_rng(seed)
    chosen = [
        generator.choice(np.flatnonzero(strata == label), size=int(size), replace=False)
        for label, size in zip(labels, np.minimum(taken, sizes), strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def proper_score(task: str) -> str:
    """The proper scoring rule that breaks ties (lower is better)."""
    return "log_loss" if task == Task.CLASSIFICATION else "rmse"


def rank_key(trial: Trial, maximize: bool, task: str) -> tuple[float, float, float]:
    """Sort key, best first: the objective, then the proper score, then fewer parameters."""
    metrics = TrialMetrics.of_trial(trial)
    value = float(trial.values[0])  # type: ignore[index]
    proper = metrics.scores.get(proper_score(task), np.inf)
    params = metrics.params if metrics.params is not None else np.inf
    return (-value if maximize else value, proper, params)


def best_of(complete: Sequence[Trial], maximize: bool, task: str) -> Trial:
    """The winner of a single-objective search."""
    return min(complete, key=lambda trial: rank_key(trial, maximize, task))


def within_noise(complete: Sequence[Trial], winner: Trial) -> int | None:
    """How many other trials are within one fold standard deviation of the winner (None
    without folds): how far apart the candidates really were."""
    spread = TrialMetrics.of_trial(winner).cv_std
    if spread is None or winner.values is None:
        return None
    best = float(winner.values[0])
    return sum(
        1
        for trial in complete
        if trial is not winner
        and trial.values
        and abs(float(trial.values[0]) - best) <= spread + TIE
    )


@dataclass(frozen=True)
class EnsembleChoice:
    """How often each candidate was chosen (0: never; the first is the winner, chosen once
    at least), and the scores after each step of the selection."""

    counts: list[int]
    steps: list[dict[str, float]]  # the objective and the proper score after each step

    @property
    def members(self) -> list[int]:
        """The chosen candidates' positions, in candidate order."""
        return [index for index, count in enumerate(self.counts) if count]


def select_ensemble(
    predictions: Sequence[np.ndarray],
    target: np.ndarray,
    task: str,
    metric: str,
    maximize: bool,
    *,
    max_members: int,
    steps: int,
) -> EnsembleChoice:
    """Ensemble selection with replacement (Caruana et al., 2004): from the winner alone,
    add at each step the candidate (possibly again) whose addition scores best on
    ``metric``, then on the proper score; keep the best of all the steps' averages (the
    winner alone wins ties). ``predictions`` are the candidates' held-out predictions
    (out-of-fold, or on the validation split), the winner first; at most ``max_members``
    distinct candidates are averaged, weighted by how often each was chosen."""
    proper = proper_score(task)

    def key(average: np.ndarray) -> tuple[tuple[float, float], dict[str, float]]:
        value = quality_score(metric, task, average, target)
        score = quality_score(proper, task, average, target)
        return (-value if maximize else value, score), {metric: value, proper: score}

    counts = [1] + [0] * (len(predictions) - 1)
    running = predictions[0].astype(np.float64)
    best_key, scores = key(running)
    best_counts, history = list(counts), [scores]
    for _ in range(steps):
        chosen = sum(1 for count in counts if count)
        options = []
        for index, prediction in enumerate(predictions):
            if counts[index] or chosen < max_members:
                option_key, option_scores = key((running + prediction) / (sum(counts) + 1))
                options.append((option_key, index, option_scores))
        option_key, index, option_scores = min(options, key=lambda option: option[:2])
        counts[index] += 1
        running += predictions[index]
        history.append(option_scores)
        if option_key < best_key:
            best_key, best_counts = option_key, list(counts)
    return EnsembleChoice(counts=best_counts, steps=history)

"""Whether the average of a search's best networks beats its best one, judged on the same
held-out predictions the trials were ranked on (out-of-fold on small data, the validation
split on large): the trials store those predictions, so the comparison trains nothing."""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.compression.spec import CompressionSpec, chain_problem
from app.core.errors import BrokenInvariant
from app.evaluation.metrics import quality_score
from app.evaluation.names import COST_METRICS
from app.search.run import SearchRun, predictions_key
from app.search.selection import choose_members, rank_key
from app.tables import Trial


@dataclass(frozen=True)
class EnsemblePick:
    """The trials to average (best first; one means the best alone) and why."""

    members: list[Trial]
    summary: dict[str, Any]  # for the job's result
    validation: dict[str, Any]  # the chosen average's held-out scores, for its version


def considered(run: SearchRun, compression: CompressionSpec | None) -> bool:
    """Ensembles compete for one quality objective with no constraints, when the job's
    compression chain (if any) runs without torch weights (an ensemble has none)."""
    limits = run.plan.constraints
    return (
        run.keeps_predictions
        and run.plan.objectives[0].metric not in COST_METRICS
        and limits.max_params is None
        and limits.max_size_bytes is None
        and limits.max_latency_ms is None
        and (
            compression is None
            or chain_problem(compression.methods, has_network=False, convolutional=False) is None
        )
    )


def _predictions(run: SearchRun, trial: Trial) -> np.ndarray | None:
    key = predictions_key(run.job_id, trial.number)
    if trial.predictions_sha256 is None or not run.store.exists(key):
        return None  # a trial of an earlier attempt, or run before predictions were kept
    data = run.store.read_bytes(key, trial.predictions_sha256)
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))


def pick(run: SearchRun, winner: Trial, complete: list[Trial]) -> EnsemblePick:
    """The best ``max_ensemble`` of the ``complete`` trials' average of k members for the
    k that scores best (``choose_members``); k = 1 keeps the winner alone."""
    objective = run.plan.objectives[0]
    task = run.dataset.task
    ranked = sorted(complete, key=lambda t: rank_key(t, objective.maximize, task))
    candidates: list[tuple[Trial, np.ndarray]] = []
    for trial in [winner, *(t for t in ranked if t.number != winner.number)]:
        if len(candidates) == run.spec.max_ensemble:
            break
        held_out = _predictions(run, trial)
        if held_out is not None:
            candidates.append((trial, held_out))
    if len(candidates) < 2 or candidates[0][0].number != winner.number:
        return EnsemblePick(
            [winner],
            {"considered": [t.number for t, _ in candidates], "members": [winner.number]},
            {},
        )
    target = run.arrays.target[run.scored_rows]
    choice = choose_members(
        [p for _, p in candidates], target, task, objective.metric, objective.maximize
    )
    members = [trial for trial, _ in candidates[: choice.members]]
    summary = {
        "considered": [t.number for t, _ in candidates],
        "members": [t.number for t in members],
        "scores_by_size": choice.scores,
        "scored_rows": len(target),
    }
    averaged = np.mean([p for _, p in candidates[: choice.members]], axis=0)
    validation: dict[str, Any] = {
        **choice.scores[choice.members - 1],
        "ensemble_of_trials": summary["members"],
    }
    if run.folds is not None:
        validation.update(_fold_spread(run, averaged, target, objective.metric))
    return EnsemblePick(members, summary, validation)


def _fold_spread(
    run: SearchRun, averaged: np.ndarray, target: np.ndarray, metric: str
) -> dict[str, Any]:
    """The average's score on each fold's validation rows, and their spread."""
    if run.folds is None:
        raise BrokenInvariant("run.folds is None")
    task = run.dataset.task
    scores = [
        quality_score(metric, task, averaged[rows], target[rows]) for rows in run.folds.positions
    ]
    return {"cv_folds": len(scores), "cv_scores": scores, "cv_std": statistics.stdev(scores)}

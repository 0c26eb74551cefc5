"""Whether a weighted average of a search's models beats its best one, judged on the same
held-out predictions the trials were ranked on (out-of-fold on small data, the validation
split on large): the trials store those predictions, so choosing trains nothing. The
candidates are the best trials and each family's best; ensemble selection with replacement
picks the members and their weights (``select_ensemble``)."""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from app.compression.spec import CompressionSpec, chain_problem
from app.contracts.params import ParamValue
from app.contracts.signature import AverageMember
from app.core.errors import BrokenInvariant
from app.evaluation.metrics import quality_score
from app.evaluation.names import COST_METRICS
from app.search.run import SearchRun, predictions_key
from app.search.selection import rank_key, select_ensemble
from app.tables import Trial
from app.training.families.registry import Family

POOL_PER_MEMBER = 3  # candidates considered per member allowed (the best trials)
SELECTION_STEPS = 20  # steps of ensemble selection


class EnsembleSummary(BaseModel):
    """How the average was chosen, for the job's result (``selection.ensemble``): the
    trials considered and those chosen; after a selection, the members' weights, the
    scores after each of its steps and the rows they were scored on."""

    considered: list[int]
    members: list[int]
    weights: list[float] | None = None
    scores_by_step: list[dict[str, float]] | None = None
    scored_rows: int | None = None


class AverageParams(BaseModel):
    """What an average's version records as its parameters (``config.params``): the trials
    averaged, each one's parameters, and their weights."""

    ensemble_of_trials: list[int]
    members: list[dict[str, ParamValue]]
    weights: list[float]


class AverageValidation(BaseModel):
    """The chosen average's held-out scores, as its version stores them (its
    ``metrics.validation``): the objective's and the proper score's by metric name (the
    extra fields), the trials averaged with their weights, and with folds the scores'
    spread over them."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, float]

    ensemble_of_trials: list[int]
    ensemble_weights: list[float]
    cv_folds: int | None = None
    cv_scores: list[float] | None = None
    cv_std: float | None = None

    @property
    def scores(self) -> dict[str, float]:
        """The scores by metric name."""
        return dict(self.__pydantic_extra__)

    def stored(self) -> dict[str, float | list[float] | list[int]]:
        """The JSON the version keeps: the scores, then the named fields that were set."""
        named = self.model_dump(exclude_unset=True, exclude=set(self.__pydantic_extra__))
        return {**self.scores, **named}


@dataclass(frozen=True)
class EnsemblePick:
    """The trials to average (best first; one means the best alone), their weights, and
    why."""

    members: list[Trial]
    summary: EnsembleSummary
    validation: AverageValidation | None = None  # an average's (None: the best alone)
    weights: list[float] | None = None  # per member; None: the best alone


def considered(run: SearchRun, compression: CompressionSpec | None) -> bool:
    """Ensembles compete for one quality objective with no constraints, when the job's
    compression chain (if any) runs without torch weights (an ensemble has none)."""
    limits = run.plan.constraints
    return (
        run.keeps_predictions
        and run.plan.objectives[0].metric not in COST_METRICS
        and limits.max_params is None
        and not limits.on_served_file
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


def _pool(run: SearchRun, winner: Trial, complete: list[Trial]) -> list[Trial]:
    """The winner, the best trials, and each family's best (what an average can use)."""
    objective = run.plan.objectives[0]
    ranked = sorted(complete, key=lambda t: rank_key(t, objective.maximize, run.dataset.task))
    pool = [winner, *(t for t in ranked if t.number != winner.number)]
    size = POOL_PER_MEMBER * run.spec.max_ensemble
    family_best: dict[Family, Trial] = {}
    for trial in ranked:
        family_best.setdefault(run.plan.space.family_of(trial.params or {}), trial)
    chosen = pool[:size]
    chosen += [t for t in family_best.values() if all(t.number != c.number for c in chosen)]
    return chosen


def pick(
    run: SearchRun, winner: Trial, complete: list[Trial], max_members: int | None = None
) -> EnsemblePick:
    """The weighted average of up to ``max_members`` (default ``max_ensemble``) trials that
    scores best on the held-out predictions (ensemble selection over the pool); the winner
    alone when none beats it."""
    objective = run.plan.objectives[0]
    task = run.dataset.task
    candidates: list[tuple[Trial, np.ndarray]] = []
    for trial in _pool(run, winner, complete):
        held_out = _predictions(run, trial)
        if held_out is not None:
            candidates.append((trial, held_out))
    if len(candidates) < 2 or candidates[0][0].number != winner.number:
        return EnsemblePick(
            [winner],
            EnsembleSummary(considered=[t.number for t, _ in candidates], members=[winner.number]),
        )
    target = run.arrays.target[run.scored_rows]
    choice = select_ensemble(
        [p for _, p in candidates],
        target,
        task,
        objective.metric,
        objective.maximize,
        max_members=max_members or run.spec.max_ensemble,
        steps=SELECTION_STEPS,
    )
    members = [candidates[index][0] for index in choice.members]
    counts = [choice.counts[index] for index in choice.members]
    weights = [count / sum(counts) for count in counts]
    best_step = sum(counts) - 1
    summary = EnsembleSummary(
        considered=[t.number for t, _ in candidates],
        members=[t.number for t in members],
        weights=weights,
        scores_by_step=choice.steps,
        scored_rows=len(target),
    )
    if len(members) == 1:
        return EnsemblePick([winner], summary)
    averaged = np.sum(
        [
            candidates[index][1] * weight
            for index, weight in zip(choice.members, weights, strict=True)
        ],
        axis=0,
    )
    validation = AverageValidation.model_validate(
        {
            **choice.steps[best_step],
            "ensemble_of_trials": summary.members,
            "ensemble_weights": weights,
        }
    )
    if run.folds is not None:
        scores = _fold_scores(run, averaged, target, objective.metric)
        spread = {"cv_folds": len(scores), "cv_scores": scores, "cv_std": statistics.stdev(scores)}
        validation = validation.model_copy(update=spread)
    return EnsemblePick(members, summary, validation, weights)


def members_of(run: SearchRun, chosen: EnsemblePick) -> list[AverageMember]:
    """The average's members as its version records them, so the version itself says
    what it averages (the dashboard's job and model pages read them from there)."""
    if chosen.weights is None:
        raise BrokenInvariant("an average without weights")
    return [
        AverageMember(
            trial=trial.number,
            family=str(run.plan.space.family_of(trial.params or {})),
            weight=weight,
            score=float(trial.values[0]) if trial.values else None,
        )
        for trial, weight in zip(chosen.members, chosen.weights, strict=True)
    ]


def _fold_scores(
    run: SearchRun, averaged: np.ndarray, target: np.ndarray, metric: str
) -> list[float]:
    """The average's score on each fold's validation rows."""
    if run.folds is None:
        raise BrokenInvariant("run.folds is None")
    task = run.dataset.task
    return [
        quality_score(metric, task, averaged[rows], target[rows]) for rows in run.folds.positions
    ]

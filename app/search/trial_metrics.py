"""What a search's trial measured, typed: its quality scores on the evidence it was ranked
on (validation rows, or the folds' mean), how its folds spread, what a refit trains for,
how many training rows it was fitted on, and its costs as served.

A trial's row keeps it as flat JSON, the scores by metric name beside the named fields
(``{"accuracy": 0.91, "log_loss": 0.3, "refit_epochs": 12, "params": 4417.0, ...}``), as
every release has written it: ``stored`` writes that JSON, in that order, and ``of_trial``
reads a row back. The scores are the model's extra fields: their names are the search's
metrics (``accuracy``, ``rmse``, ...), an open set."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from app.core.errors import BrokenInvariant
from app.evaluation.footprint import Footprint
from app.tables import Trial


@dataclass(frozen=True)
class ServedCosts:
    """A trial's file as served: its parameters, and its size and latency when an objective
    or a constraint needs them (None: not measured)."""

    params: float
    size_bytes: float | None = None
    latency_ms: float | None = None
    footprint: Footprint | None = None  # memory and energy, when asked for


class TrialMetrics(BaseModel):
    """A trial's measurements; the quality scores, by metric name, are the extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, float]

    cv_folds: int | None = None
    cv_scores: list[float] | None = None
    cv_std: float | None = None
    refit_epochs: int | None = None
    train_processes: int | None = None
    # Training rows the configuration was fitted on (each fold's, with folds): fewer than
    # the training split's when a large table's early trials fit on a subsample.
    train_rows: int | None = None
    # Seconds spent measuring and storing the fitted trial (export, latency, checkpoint,
    # held-out predictions): the rest of its time is fitting, what a refit repeats.
    store_s: float | None = None
    params: float | None = None
    size_bytes: float | None = None
    latency_ms: float | None = None
    # Memory one run takes at batch 1 (and at 256), energy per 1,000 rows and whether RAPL
    # measured it or it is an estimate (``app.evaluation.footprint``), when asked for.
    peak_memory_mb: float | None = None
    peak_memory_b256_mb: float | None = None
    energy_mj_per_1k_rows: float | None = None
    energy_source: str | None = None
    energy_watts_per_core: float | None = None

    @classmethod
    def trained(cls, scores: dict[str, float], *, refit_epochs: int) -> TrialMetrics:
        """A configuration trained once and scored on the validation rows; a refit trains
        for ``refit_epochs`` (epochs, or a GBDT's boosting rounds)."""
        return cls.model_validate({**scores, "refit_epochs": refit_epochs})

    @classmethod
    def folds_mean(
        cls, per_fold: list[dict[str, float]], best_epochs: list[int], primary: str
    ) -> TrialMetrics:
        """Each score's mean over the folds, the primary metric's spread, and the epoch
        count a refit trains for (the folds' mean count of epochs to their best, rounded
        up)."""
        means = {name: statistics.fmean(fold[name] for fold in per_fold) for name in per_fold[0]}
        scores = [fold[primary] for fold in per_fold]
        return cls.model_validate(
            {
                **means,
                "cv_folds": len(per_fold),
                "cv_scores": scores,
                "cv_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "refit_epochs": math.ceil(statistics.fmean(e + 1 for e in best_epochs)),
            }
        )

    @classmethod
    def of_trial(cls, trial: Trial) -> TrialMetrics:
        """A trial row's metrics (none yet: empty)."""
        return cls.model_validate(trial.metrics or {})

    def in_processes(self, count: int) -> TrialMetrics:
        """These metrics, with the number of processes that trained the trial."""
        return self.model_copy(update={"train_processes": count})

    def on_rows(self, count: int) -> TrialMetrics:
        """These metrics, with the number of training rows the trial was fitted on."""
        return self.model_copy(update={"train_rows": count})

    def served(self, costs: ServedCosts) -> TrialMetrics:
        """These metrics with the trial's costs as served (those measured)."""
        measured: dict[str, float | str] = {"params": costs.params}
        if costs.size_bytes is not None and costs.latency_ms is not None:
            measured |= {"size_bytes": costs.size_bytes, "latency_ms": costs.latency_ms}
        if costs.footprint is not None:
            measured |= costs.footprint.metrics()
        return self.model_copy(update=measured)

    @property
    def scores(self) -> dict[str, float]:
        """The quality scores by metric name."""
        return dict(self.__pydantic_extra__)

    def value(self, metric: str) -> float | None:
        """The trial's value of ``metric``, a score or a cost (None: not measured)."""
        costs = {
            "params": self.params,
            "size_bytes": self.size_bytes,
            "latency_ms": self.latency_ms,
            "peak_memory_mb": self.peak_memory_mb,
            "peak_memory_b256_mb": self.peak_memory_b256_mb,
            "energy_mj_per_1k_rows": self.energy_mj_per_1k_rows,
        }
        return self.scores.get(metric, costs.get(metric))

    def objective_values(self, metrics: list[str]) -> list[float]:
        """The values of a search's objectives, in order (each one is measured)."""
        values = [self.value(metric) for metric in metrics]
        missing = [metric for metric, value in zip(metrics, values, strict=True) if value is None]
        if missing:
            raise BrokenInvariant(f"objectives not measured: {missing}")
        return [value for value in values if value is not None]

    def stored(self) -> dict[str, float | list[float]]:
        """The JSON a trial's row keeps: the scores, then the named fields that were set."""
        named = self.model_dump(exclude_unset=True, exclude=set(self.__pydantic_extra__))
        return {**self.scores, **named}

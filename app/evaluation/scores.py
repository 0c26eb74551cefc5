"""A model's held-out scores, typed (``app.evaluation.metrics`` computes them): what is
registered with every version, as the JSON ``as_json`` gives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResidualSummary:
    """The residuals (predicted - true) of the test rows: their ``percentiles``' values
    (``quantiles``) and a histogram (``edges``, one more than ``counts``)."""

    percentiles: list[float]
    quantiles: list[float]
    edges: list[float]
    counts: list[float]


class _Scores:
    def as_json(self) -> dict[str, Any]:
        """The scores as a version's metrics store them."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


@dataclass(frozen=True)
class ClassificationScores(_Scores):
    """Accuracy, macro precision/recall/F1, one-vs-rest ROC-AUC (NaN: one class in the
    rows), log loss and the confusion matrix (rows: true class, columns: predicted)."""

    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    roc_auc: float
    log_loss: float
    confusion_matrix: list[list[int]]

    @property
    def quality(self) -> float:
        """The score a compression's budget is counted in (higher is better)."""
        return self.accuracy


@dataclass(frozen=True)
class RegressionScores(_Scores):
    """MAE, RMSE, R², Pearson r (NaN: constant predictions or target) and the residuals."""

    mae: float
    rmse: float
    r2: float
    pearson_r: float
    residuals: ResidualSummary

    @property
    def quality(self) -> float:
        """The score a compression's budget is counted in (lower is better)."""
        return self.rmse


TaskScores = ClassificationScores | RegressionScores


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call at one batch size: the median and the 95th percentile."""

    p50: float
    p95: float

    def lower(self, other: Latency) -> Latency:
        """Each percentile's lower value of the two."""
        return Latency(min(self.p50, other.p50), min(self.p95, other.p95))

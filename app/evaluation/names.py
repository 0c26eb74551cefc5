"""Every metric by name, in one table: the task it measures (None: a cost that any model
has), which way is better, and whether a search may optimise it. The lists the rest of the
code reads are derived from it (no heavy imports: the gateway validates with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.contracts.enums import Task


@dataclass(frozen=True)
class MetricInfo:
    task: Literal["classification", "regression"] | None
    higher_is_better: bool
    searchable: bool


METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("classification", True, True),
    "precision_macro": MetricInfo("classification", True, False),  # reported, not searched
    "recall_macro": MetricInfo("classification", True, False),
    "f1_macro": MetricInfo("classification", True, True),
    "roc_auc": MetricInfo("classification", True, True),
    "log_loss": MetricInfo("classification", False, True),
    "mae": MetricInfo("regression", False, True),
    "rmse": MetricInfo("regression", False, True),
    "r2": MetricInfo("regression", True, True),
    "pearson_r": MetricInfo("regression", True, False),
    "latency_ms": MetricInfo(None, False, True),
    "size_bytes": MetricInfo(None, False, True),
    "params": MetricInfo(None, False, True),
    # Memory one run at batch 1 takes, and energy per 1,000 rows (app.evaluation.footprint).
    "peak_memory_mb": MetricInfo(None, False, True),
    "energy_mj_per_1k_rows": MetricInfo(None, False, True),
}
HIGHER_IS_BETTER = {name: info.higher_is_better for name, info in METRICS.items()}
CLASSIFICATION_METRICS = tuple(
    name for name, info in METRICS.items() if info.task == "classification"
)
REGRESSION_METRICS = tuple(name for name, info in METRICS.items() if info.task == "regression")
COST_METRICS = tuple(name for name, info in METRICS.items() if info.task is None)
# What a search may optimise: ``SearchMetric`` in app.search.spec (a test holds them equal).
SEARCH_METRICS = tuple(name for name, info in METRICS.items() if info.searchable)


def searchable_for(task: str) -> frozenset[str]:
    """The metrics a search on ``task`` may optimise: its own and the costs."""
    return frozenset(
        name for name, info in METRICS.items() if info.searchable and info.task in (task, None)
    )


def task_metric_names(task: str) -> tuple[str, ...]:
    """The quality metrics that apply to a task."""
    return CLASSIFICATION_METRICS if task == Task.CLASSIFICATION else REGRESSION_METRICS


def default_metric(task: str) -> str:
    return "accuracy" if task == Task.CLASSIFICATION else "rmse"

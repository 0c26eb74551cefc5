"""Metric names and which way is better (no heavy imports: the gateway validates with it)."""

from __future__ import annotations

HIGHER_IS_BETTER = {
    "accuracy": True, "precision_macro": True, "recall_macro": True, "f1_macro": True,
    "roc_auc": True, "log_loss": False, "mae": False, "rmse": False, "r2": True,
    "pearson_r": True, "latency_ms": False, "size_bytes": False, "params": False,
}
CLASSIFICATION_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc",
                          "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2", "pearson_r")
COST_METRICS = ("latency_ms", "size_bytes", "params")
# What a search may optimise (the list; precision/recall are reported, not searched).
SEARCH_METRICS = ("accuracy", "f1_macro", "roc_auc", "log_loss", "mae", "rmse", "r2",
                  *COST_METRICS)


def task_metric_names(task: str) -> tuple[str, ...]:
    """The quality metrics that apply to a task."""
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def default_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "rmse"

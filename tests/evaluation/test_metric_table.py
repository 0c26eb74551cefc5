"""The metric table is the one list of metric names: the job spec's ``SearchMetric`` holds
exactly its searchable ones, and each task's metrics are its own."""

from __future__ import annotations

from typing import get_args

from app.evaluation.names import (
    COST_METRICS,
    HIGHER_IS_BETTER,
    METRICS,
    SEARCH_METRICS,
    searchable_for,
    task_metric_names,
)
from app.search.spec import SearchMetric


def test_the_spec_accepts_exactly_the_searchable_metrics() -> None:
    assert set(get_args(SearchMetric)) == set(SEARCH_METRICS)
    assert set(HIGHER_IS_BETTER) == set(METRICS)


def test_each_task_searches_its_own_metrics_and_the_costs() -> None:
    assert searchable_for("classification") == {
        "accuracy",
        "f1_macro",
        "roc_auc",
        "log_loss",
        *COST_METRICS,
    }
    assert searchable_for("regression") == {"mae", "rmse", "r2", *COST_METRICS}
    assert "pearson_r" in task_metric_names("regression")
    assert "precision_macro" not in SEARCH_METRICS

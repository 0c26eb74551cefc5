"""A trial's metrics are typed in the worker and stored as the flat JSON its row has always
kept: the scores by metric name first, then the named fields that were set, in one order."""

from __future__ import annotations

import json

import pytest

from app.core.errors import BrokenInvariant
from app.search.trial_metrics import ServedCosts, TrialMetrics
from app.tables import Trial


def test_a_holdout_trial_is_stored_as_rows_always_were() -> None:
    metrics = (
        TrialMetrics.trained({"accuracy": 0.9, "log_loss": 0.25}, refit_epochs=7)
        .in_processes(2)
        .served(ServedCosts(params=4417.0, size_bytes=20_000.0, latency_ms=0.05))
    )
    assert json.dumps(metrics.stored()) == (
        '{"accuracy": 0.9, "log_loss": 0.25, "refit_epochs": 7, "train_processes": 2, '
        '"params": 4417.0, "size_bytes": 20000.0, "latency_ms": 0.05}'
    )
    assert metrics.objective_values(["accuracy", "latency_ms"]) == [0.9, 0.05]
    assert metrics.value("rmse") is None


def test_unmeasured_costs_and_fields_are_left_out() -> None:
    metrics = TrialMetrics.trained({"rmse": 1.5}, refit_epochs=3).served(ServedCosts(12.0))
    assert metrics.stored() == {"rmse": 1.5, "refit_epochs": 3, "params": 12.0}
    with pytest.raises(BrokenInvariant, match="size_bytes"):
        metrics.objective_values(["rmse", "size_bytes"])


def test_a_row_reads_back_as_it_was_written() -> None:
    stored = {
        "accuracy": 0.8,
        "log_loss": 0.4,
        "cv_folds": 2,
        "cv_scores": [0.9, 0.7],
        "cv_std": 0.14,
        "refit_epochs": 8,
        "params": 100.0,
    }
    metrics = TrialMetrics.of_trial(Trial(metrics=stored))
    assert metrics.scores == {"accuracy": 0.8, "log_loss": 0.4}
    assert (metrics.cv_std, metrics.refit_epochs, metrics.train_processes) == (0.14, 8, None)
    assert json.dumps(metrics.stored()) == json.dumps(stored)
    assert TrialMetrics.of_trial(Trial(metrics=None)).stored() == {}

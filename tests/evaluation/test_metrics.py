"""Held-out metrics registered on every version."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.metrics import quality_score, task_metrics


def test_classification_metrics() -> None:
    target = np.array([0, 0, 1, 1, 2, 2])
    output = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.2, 0.7],
        ]
    )
    metrics = task_metrics("classification", output, target)
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    assert metrics["recall_macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["precision_macro"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert 0.9 < metrics["roc_auc"] <= 1.0
    expected_loss = -np.mean(np.log(output[np.arange(6), target]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert quality_score("accuracy", "classification", output, target) == metrics["accuracy"]
    # the fast path ranking uses gives scikit-learn's log loss, with a zero and a class unseen
    skewed = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.7, 0.0]])
    for probabilities, truth in ((output, target), (skewed, np.array([0, 1, 2]))):
        assert quality_score("log_loss", "classification", probabilities, truth) == pytest.approx(
            task_metrics("classification", probabilities, truth)["log_loss"], rel=1e-9
        )


def test_regression_metrics() -> None:
    target = np.array([1.0, 2.0, 3.0, 4.0])
    output = np.array([[1.5], [2.0], [2.5], [4.5]])
    metrics = task_metrics("regression", output, target)
    assert metrics["mae"] == pytest.approx(0.375)
    assert metrics["rmse"] == pytest.approx(np.sqrt(0.1875))
    assert metrics["pearson_r"] == pytest.approx(np.corrcoef(output[:, 0], target)[0, 1])
    assert quality_score("rmse", "regression", output, target) == pytest.approx(metrics["rmse"])
    residuals = metrics["residuals"]  # predicted - true: 0.5, 0, -0.5, 0.5
    assert residuals["quantiles"][2] == pytest.approx(0.25)  # the median
    assert sum(residuals["counts"]) == 4 and len(residuals["edges"]) == 13
    assert residuals["edges"][0] == -0.5 and residuals["edges"][-1] == 0.5

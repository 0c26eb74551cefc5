"""Task metrics computed from a model's outputs."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

# Which way is better for each metric (used to pick the best trial).
HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "mae": False, "rmse": False, "r2": True}


def classification_metrics(probabilities: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of argmax predictions against class indices."""
    predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": float(skm.accuracy_score(target, predicted)),
        "f1_macro": float(skm.f1_score(target, predicted, average="macro", zero_division=0)),
    }


def regression_metrics(values: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of predicted values."""
    predicted = values.reshape(-1)
    return {
        "mae": float(skm.mean_absolute_error(target, predicted)),
        "rmse": float(np.sqrt(skm.mean_squared_error(target, predicted))),
        "r2": float(skm.r2_score(target, predicted)),
    }


def task_metrics(task: str, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The metrics of ``task`` for a model output on rows whose truth is ``target``."""
    if task == "classification":
        return classification_metrics(output, target)
    return regression_metrics(output, target)

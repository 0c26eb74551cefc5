"""Task metrics computed from a model's outputs (numpy in, plain floats out)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from app.contracts.enums import Task
from app.evaluation.scores import (
    ClassificationScores,
    RegressionScores,
    ResidualSummary,
    TaskScores,
)


def _probabilities(output: np.ndarray) -> np.ndarray:
    """Rows that sum to one (outputs are already probabilities; clip rounding noise)."""
    clipped = np.clip(output.astype(np.float64), 1e-12, 1.0)
    summed: np.ndarray = clipped / clipped.sum(axis=1, keepdims=True)
    return summed


def _roc_auc(probabilities: np.ndarray, target: np.ndarray) -> float:
    """One-vs-rest macro ROC-AUC; NaN when the rows hold a single class."""
    classes = np.arange(probabilities.shape[1])
    present = np.unique(target)
    if len(present) < 2:
        return float("nan")
    if probabilities.shape[1] == 2:
        return float(skm.roc_auc_score(target, probabilities[:, 1]))
    if len(present) < probabilities.shape[1]:  # only score the classes that occur
        probabilities = probabilities[:, present]
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        classes = present
    return float(
        skm.roc_auc_score(target, probabilities, multi_class="ovr", average="macro", labels=classes)
    )


def classification_metrics(probabilities: np.ndarray, target: np.ndarray) -> ClassificationScores:
    """Accuracy, macro precision/recall/F1, one-vs-rest ROC-AUC, log loss and the confusion
    matrix (rows: true class, columns: predicted) against class indices."""
    predicted = probabilities.argmax(axis=1)
    labels = np.arange(probabilities.shape[1])
    proba = _probabilities(probabilities)
    return ClassificationScores(
        accuracy=float(skm.accuracy_score(target, predicted)),
        precision_macro=float(
            skm.precision_score(target, predicted, average="macro", labels=labels, zero_division=0)
        ),
        recall_macro=float(
            skm.recall_score(target, predicted, average="macro", labels=labels, zero_division=0)
        ),
        f1_macro=float(
            skm.f1_score(target, predicted, average="macro", labels=labels, zero_division=0)
        ),
        roc_auc=_roc_auc(proba, target),
        log_loss=float(skm.log_loss(target, proba, labels=labels)),
        confusion_matrix=skm.confusion_matrix(target, predicted, labels=labels).tolist(),
    )


RESIDUAL_BINS = 12


def residual_summary(predicted: np.ndarray, target: np.ndarray) -> ResidualSummary:
    """The residuals (predicted - true) of the test rows: their 5/25/50/75/95th percentiles
    and a histogram (``edges``, one more than ``counts``), for the model page."""
    residuals = predicted - target
    counts, edges = np.histogram(residuals, bins=RESIDUAL_BINS)
    return ResidualSummary(
        percentiles=[5.0, 25.0, 50.0, 75.0, 95.0],
        quantiles=np.percentile(residuals, [5, 25, 50, 75, 95]).tolist(),
        edges=edges.tolist(),
        counts=counts.astype(float).tolist(),
    )


def regression_metrics(values: np.ndarray, target: np.ndarray) -> RegressionScores:
    """MAE, RMSE, R² and Pearson r of predicted values, and a summary of the residuals."""
    predicted = values.reshape(-1).astype(np.float64)
    spread = predicted.std() * target.std()
    pearson = float(np.corrcoef(predicted, target)[0, 1]) if spread > 0 else float("nan")
    return RegressionScores(
        mae=float(skm.mean_absolute_error(target, predicted)),
        rmse=float(np.sqrt(skm.mean_squared_error(target, predicted))),
        r2=float(skm.r2_score(target, predicted)),
        pearson_r=pearson,
        residuals=residual_summary(predicted, target.astype(np.float64)),
    )


def task_scores(task: str, output: np.ndarray, target: np.ndarray) -> TaskScores:
    """The scores of ``task`` for a model output on rows whose truth is ``target``."""
    if task == Task.CLASSIFICATION:
        return classification_metrics(output, target)
    return regression_metrics(output, target)


def task_metrics(task: str, output: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """``task_scores`` as the JSON a version's metrics store."""
    return task_scores(task, output, target).as_json()


def quality_score(metric: str, task: str, output: np.ndarray, target: np.ndarray) -> float:
    """One quality metric (not a cost metric) of an output; cheaper than ``task_metrics``."""
    if task == Task.CLASSIFICATION:
        predicted = output.argmax(axis=1)
        if metric == "accuracy":
            return float((predicted == target).mean())
        if metric == "log_loss":  # the proper score every trial and average step ranks by
            if not np.isfinite(output).all():  # a diverged network: as scikit-learn refuses
                raise ValueError("the outputs are not all finite numbers")
            proba = _probabilities(output)
            return float(-np.mean(np.log(proba[np.arange(len(target)), target.astype(np.int64)])))
        return float(classification_metrics(output, target).as_json()[metric])
    values = output.reshape(-1)
    if metric == "rmse":
        return float(np.sqrt(np.mean((values - target) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(values - target)))
    return float(regression_metrics(output, target).as_json()[metric])

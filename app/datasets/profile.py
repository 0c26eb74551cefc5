"""Computing a dataset's profile from its parsed arrays (once, at upload)."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.dataset_profile import (
    TOP_CLASSES,
    ClassCount,
    ColumnProfile,
    DatasetProfile,
    DroppedRows,
    TargetProfile,
)


def _column(name: str, values: np.ndarray) -> ColumnProfile:
    return ColumnProfile(name=name, type="numeric", missing=int(np.isnan(values).sum()),
                         distinct=len(np.unique(values)), min=float(values.min()),
                         mean=float(values.mean(dtype=np.float64)), max=float(values.max()))


def _target(name: str, task: str, target: np.ndarray,
            labels: list[Any] | None) -> TargetProfile:
    if labels is None:
        values = target.astype(np.float64, copy=False)
        return TargetProfile(name=name, task=task, min=float(values.min()),
                             mean=float(values.mean()), max=float(values.max()),
                             std=float(values.std()))
    counts = np.bincount(target, minlength=len(labels))
    order = np.argsort(-counts, kind="stable")
    listed = [ClassCount(label=labels[index], rows=int(counts[index]))
              for index in order[:TOP_CLASSES]]
    return TargetProfile(name=name, task=task, classes=listed,
                         other_classes=max(0, len(labels) - TOP_CLASSES))


def profile_of(features: np.ndarray, feature_names: list[str], target: np.ndarray,
               target_name: str, task: str, labels: list[Any] | None,
               dropped: list[DroppedRows]) -> DatasetProfile:
    """The profile of parsed arrays (one column at a time, so memory stays small)."""
    columns = [_column(name, features[:, index]) for index, name in enumerate(feature_names)]
    return DatasetProfile(rows=len(features), columns=columns,
                          target=_target(target_name, task, target, labels), dropped=dropped)

"""Computing a dataset's profile from its typed columns (once, at upload)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from app.contracts.profile import (
    TOP_CLASSES,
    TOP_VALUES,
    ClassCount,
    ColumnProfile,
    DatasetProfile,
    DroppedRows,
    TargetProfile,
    ValueCount,
)
from app.core.errors import BrokenInvariant
from app.preprocessing.columns import SourceColumn
from app.preprocessing.fit import value_counts

DRIFT_BINS = 10  # deciles: the bins live numbers are compared in (app.serving.drift)


def _numeric(column: SourceColumn, values: np.ndarray) -> ColumnProfile:
    filled = values[~np.isnan(values)]
    words = column.words
    edges = np.unique(np.quantile(filled, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, filled, side="right"), minlength=len(edges) + 1)
    return ColumnProfile(
        name=column.name,
        type="numeric",
        reason=column.reason if words is not None else None,
        words=words.cells if words is not None else None,
        top=[ValueCount(value=w, rows=n) for w, n in words.top] if words is not None else None,
        missing=len(values) - len(filled),
        distinct=len(np.unique(filled)),
        min=float(filled.min()),
        mean=float(filled.mean(dtype=np.float64)),
        max=float(filled.max()),
        edges=[float(edge) for edge in edges],
        shares=[float(count) / max(len(filled), 1) for count in counts],
    )


def _column(column: SourceColumn) -> ColumnProfile:
    if column.type == "ignore":
        return ColumnProfile(
            name=column.name, type="ignored", reason=column.reason, missing=column.missing
        )
    if column.numbers is not None:
        return _numeric(column, column.numbers)
    if column.text is None:
        raise BrokenInvariant("column.text is None")
    counts = value_counts(column.text)
    if column.type == "datetime":
        filled = pc.filter(column.text, pc.not_equal(column.text, ""))
        return ColumnProfile(
            name=column.name,
            type="datetime",
            missing=column.missing,
            distinct=len(counts),
            earliest=pc.min(filled).as_py(),
            latest=pc.max(filled).as_py(),
        )
    return ColumnProfile(
        name=column.name,
        type="categorical",
        missing=column.missing,
        distinct=len(counts),
        top=[ValueCount(value=value, rows=rows) for value, rows in counts[:TOP_VALUES]],
    )


def _target(name: str, task: str, target: np.ndarray, labels: list[Any] | None) -> TargetProfile:
    if labels is None:
        values = target.astype(np.float64, copy=False)
        return TargetProfile(
            name=name,
            task=task,
            min=float(values.min()),
            mean=float(values.mean()),
            max=float(values.max()),
            std=float(values.std()),
        )
    counts = np.bincount(target, minlength=len(labels))
    order = np.argsort(-counts, kind="stable")
    listed = [
        ClassCount(label=labels[index], rows=int(counts[index])) for index in order[:TOP_CLASSES]
    ]
    return TargetProfile(
        name=name, task=task, classes=listed, other_classes=max(0, len(labels) - TOP_CLASSES)
    )


def profile_of(
    columns: list[SourceColumn],
    target: np.ndarray,
    target_name: str,
    task: str,
    labels: list[Any] | None,
    dropped: list[DroppedRows],
    *,
    duplicates: int = 0,
) -> DatasetProfile:
    """The profile of typed columns (one column at a time, so memory stays small)."""
    return DatasetProfile(
        rows=len(target),
        duplicate_rows=duplicates,
        columns=[_column(column) for column in columns],
        target=_target(target_name, task, target, labels),
        dropped=dropped,
    )

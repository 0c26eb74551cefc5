"""Seeded train / validation / test splits, stratified by class for classification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contracts.enums import Task
from app.core.errors import InvalidInput

VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15
MIN_ROWS = 10
MIN_ROWS_PER_CLASS = 3  # one each for train, validation and test


@dataclass(frozen=True)
class SplitIndices:
    """Row indices of each split; disjoint, together covering every row."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def check_splittable(target: np.ndarray, task: Task, labels: list[Any] | None) -> None:
    """Raise InvalidInput unless every split (and every class in it) can get rows."""
    if len(target) < MIN_ROWS:
        raise InvalidInput(
            f"dataset has {len(target)} rows; at least {MIN_ROWS} are needed "
            "for train, validation and test splits"
        )
    if task == Task.CLASSIFICATION and labels is not None:
        counts = np.bincount(target, minlength=len(labels))
        for position, count in enumerate(counts):
            if count < MIN_ROWS_PER_CLASS:
                raise InvalidInput(
                    f"class {labels[position]!r} has {count} row(s); each class "
                    f"needs at least {MIN_ROWS_PER_CLASS} (one per split)"
                )


def _cut(count: int) -> tuple[int, int]:
    n_test = max(1, round(count * TEST_FRACTION))
    n_validation = max(1, round(count * VALIDATION_FRACTION))
    return n_test, n_validation


def split_indices(target: np.ndarray, task: Task, seed: int) -> SplitIndices:
    """Shuffle with ``seed`` and cut each class (or the whole set) 70/15/15."""
    rng = np.random.default_rng(seed)
    groups = (
        [np.flatnonzero(target == value) for value in np.unique(target)]
        if task == Task.CLASSIFICATION
        else [np.arange(len(target))]
    )
    train, validation, test = [], [], []
    for group in groups:
        shuffled = rng.permutation(group)
        n_test, n_validation = _cut(len(shuffled))
        test.append(shuffled[:n_test])
        validation.append(shuffled[n_test : n_test + n_validation])
        train.append(shuffled[n_test + n_validation :])
    return SplitIndices(
        train=rng.permutation(np.concatenate(train)),
        validation=np.sort(np.concatenate(validation)),
        test=np.sort(np.concatenate(test)),
    )


def fold_indices(
    target: np.ndarray, task: Task, rows: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``rows`` cut into ``folds`` (train, validation) pairs: every row validates once;
    classes are dealt round-robin so that each fold holds each class in proportion."""
    rng = np.random.default_rng(seed)
    groups = (
        [rows[target[rows] == value] for value in np.unique(target[rows])]
        if task == Task.CLASSIFICATION
        else [rows]
    )
    assigned = np.empty(len(rows), dtype=np.int64)
    position = {int(row): index for index, row in enumerate(rows)}
    offset = 0
    for group in groups:
        for order, row in enumerate(rng.permutation(group)):
            assigned[position[int(row)]] = (order + offset) % folds
        offset += len(group)
    return [
        (np.sort(rows[assigned != fold]), np.sort(rows[assigned == fold])) for fold in range(folds)
    ]

"""Seeded, stratified, disjoint splits."""

from __future__ import annotations

import numpy as np

from app.contracts.enums import Task
from app.datasets.splits import split_indices


def test_splits_are_disjoint_complete_and_stratified() -> None:
    target = np.repeat(np.arange(4), [30, 10, 3, 57])
    splits = split_indices(target, Task.CLASSIFICATION, seed=1)
    combined = np.concatenate([splits.train, splits.validation, splits.test])
    assert sorted(combined.tolist()) == list(range(len(target)))
    for part in (splits.train, splits.validation, splits.test):
        assert set(target[part].tolist()) == {0, 1, 2, 3}  # every class in every split


def test_splits_are_reproducible_per_seed() -> None:
    target = np.random.default_rng(0).integers(0, 3, 200)
    first = split_indices(target, Task.CLASSIFICATION, seed=5)
    again = split_indices(target, Task.CLASSIFICATION, seed=5)
    other = split_indices(target, Task.CLASSIFICATION, seed=6)
    assert np.array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_regression_split_fractions() -> None:
    splits = split_indices(np.linspace(0, 1, 100), Task.REGRESSION, seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (70, 15, 15)

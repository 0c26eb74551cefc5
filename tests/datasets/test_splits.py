"""Seeded, stratified, disjoint splits, which never put two identical feature rows on both
sides of a split or of a cross-validation fold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.contracts.enums import Task
from app.core.errors import InvalidInput
from app.datasets.splits import (
    _FNV_OFFSET,
    _FNV_PRIME,
    check_distinct,
    duplicate_rows,
    fold_indices,
    row_groups,
    split_indices,
)


def distinct_rows(count: int, width: int = 3) -> np.ndarray:
    return np.arange(count * width, dtype=np.float32).reshape(count, width)


def test_splits_are_disjoint_complete_and_stratified() -> None:
    target = np.repeat(np.arange(4), [30, 10, 3, 57])
    splits = split_indices(target, Task.CLASSIFICATION, seed=1, features=distinct_rows(100))
    combined = np.concatenate([splits.train, splits.validation, splits.test])
    assert sorted(combined.tolist()) == list(range(len(target)))
    for part in (splits.train, splits.validation, splits.test):
        assert set(target[part].tolist()) == {0, 1, 2, 3}  # every class in every split


def test_splits_are_reproducible_per_seed() -> None:
    target = np.random.default_rng(0).integers(0, 3, 200)
    features = distinct_rows(200)
    first = split_indices(target, Task.CLASSIFICATION, seed=5, features=features)
    again = split_indices(target, Task.CLASSIFICATION, seed=5, features=features)
    other = split_indices(target, Task.CLASSIFICATION, seed=6, features=features)
    assert np.array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_regression_split_fractions() -> None:
    splits = split_indices(
        np.linspace(0, 1, 100), Task.REGRESSION, seed=0, features=distinct_rows(100)
    )
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (70, 15, 15)


def test_rows_are_grouped_by_their_feature_values() -> None:
    features = np.array([[1, 2], [3, 4], [1, 2], [-0.0, 5], [0.0, 5], [1, 2]], dtype=np.float32)
    assert row_groups(features).tolist() == [0, 1, 0, 3, 3, 0]
    assert duplicate_rows(row_groups(features)) == 3  # two repeats of row 0, one of row 3
    images = np.zeros((4, 1, 2, 2), dtype=np.float32)  # rows of any shape
    images[1, 0, 1, 1] = 1.0
    assert row_groups(images).tolist() == [0, 1, 0, 0]


def test_too_few_distinct_rows_cannot_be_split_without_sharing_one() -> None:
    check_distinct(row_groups(distinct_rows(3)), np.zeros(3), Task.REGRESSION, None)
    with pytest.raises(InvalidInput, match="2 distinct row"):
        check_distinct(
            row_groups(np.repeat(distinct_rows(2), 20, axis=0)), np.zeros(40), Task.REGRESSION, None
        )


def _assert_no_row_on_both_sides(
    features: np.ndarray, sides: list[np.ndarray], everything: np.ndarray
) -> None:
    seen: dict[bytes, int] = {}
    for side, rows in enumerate(sides):
        for row in rows.tolist():
            key = features[row].tobytes()
            assert seen.setdefault(key, side) == side, f"row {row} is on two sides"
    assert np.array_equal(np.sort(np.concatenate(sides)), np.sort(everything))


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    distinct=st.integers(3, 40),
    rows=st.integers(10, 300),
    classes=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    skew=st.floats(0.0, 0.9),
)
def test_identical_rows_never_land_on_both_sides_of_any_split_or_fold(
    distinct: int, rows: int, classes: int, seed: int, skew: float
) -> None:
    rng = np.random.default_rng(seed)
    # Every distinct row at least once, then repeats, a share of them of a single row (a
    # request logged many times); the same row may carry different labels.
    picks = np.concatenate(
        [np.arange(distinct), np.where(rng.random(rows) < skew, 0, rng.integers(0, distinct, rows))]
    )
    features = distinct_rows(distinct)[rng.permutation(picks)]
    task = Task.CLASSIFICATION if classes > 1 else Task.REGRESSION
    target = rng.integers(0, classes, len(features)) if classes > 1 else rng.normal(size=len(picks))
    splits = split_indices(target, task, seed=seed, features=features)
    parts = [splits.train, splits.validation, splits.test]
    assert all(len(part) for part in parts)
    _assert_no_row_on_both_sides(features, parts, np.arange(len(features)))
    rows_cv = np.sort(np.concatenate([splits.train, splits.validation]))
    folds = fold_indices(target, task, rows_cv, 5, seed, groups=splits.groups)
    assert len(folds) >= 2
    _assert_no_row_on_both_sides(features, [validation for _, validation in folds], rows_cv)
    for train, validation in folds:
        assert len(train) and len(validation)
        _assert_no_row_on_both_sides(
            features, [train, validation], np.concatenate([train, validation])
        )


def test_a_row_repeated_many_times_stays_in_one_split_and_the_rest_keep_their_shares() -> None:
    rng = np.random.default_rng(4)
    features = np.concatenate([distinct_rows(1000), np.repeat(distinct_rows(1), 200, axis=0)])
    target = rng.integers(0, 2, len(features))
    splits = split_indices(target, Task.CLASSIFICATION, seed=2, features=features)
    repeated = np.flatnonzero(splits.groups == 0)
    assert len(repeated) == 201
    sides = [np.isin(repeated, part).all() for part in (splits.train, splits.validation)]
    assert any(sides) or np.isin(repeated, splits.test).all()
    assert 130 <= len(splits.test) <= 200 and 130 <= len(splits.validation) <= 200


def _two_rows_of_one_hash() -> np.ndarray:
    """Two different rows of three float32s that the grouping hash maps to one value (found
    by a birthday search over the first two words; the third cancels the low half)."""
    rng = np.random.default_rng(0)
    count = 1 << 20
    first, second = (
        np.uint32(0x3F800000) + rng.integers(0, 1 << 23, count).astype(np.uint32) for _ in "ab"
    )

    def mix(value: np.ndarray, words: np.ndarray) -> np.ndarray:
        value = (value ^ words.astype(np.uint64)) * _FNV_PRIME
        mixed: np.ndarray = value ^ (value >> np.uint64(29))
        return mixed

    hashed = mix(mix(np.full(count, _FNV_OFFSET, dtype=np.uint64), first), second)
    high = hashed >> np.uint64(32)
    order = np.argsort(high)
    for k in np.flatnonzero(high[order][1:] == high[order][:-1]).tolist():
        i, j = order[k], order[k + 1]
        if first[i] == first[j] and second[i] == second[j]:
            continue
        third = 0x3F800000 ^ (int(hashed[i]) & 0xFFFFFFFF) ^ (int(hashed[j]) & 0xFFFFFFFF)
        words = [[first[i], second[i], 0x3F800000], [first[j], second[j], third]]
        rows = np.array(words, dtype=np.uint32).view(np.float32)
        if np.isfinite(rows).all():
            return rows
    raise AssertionError("no collision found")


def test_rows_a_hash_confuses_are_never_grouped() -> None:
    """Grouping compares the values, not only a hash of them: two different rows made to
    share a hash stay apart, a real repeat of one of them joins it, and NaN rows with any
    payload are one."""
    rows = _two_rows_of_one_hash()
    assert row_groups(rows[:1]).tolist() == [0]
    assert row_groups(np.concatenate([rows, rows[1:]])).tolist() == [0, 1, 1]
    nans = np.array([[np.nan, 1, 1], [np.nan, 1, 1]], dtype=np.float32)
    nans.view(np.uint32)[1, 0] |= 1  # a NaN with another payload
    assert row_groups(nans).tolist() == [0, 0]


def test_a_class_of_repeated_rows_is_refused_naming_the_class() -> None:
    features = np.concatenate([distinct_rows(40), np.full((4, 3), 999.0, dtype=np.float32)])
    target = np.array([0] * 20 + [1] * 20 + [2] * 4)
    with pytest.raises(InvalidInput, match=r"class 'c' has 4 row\(s\) but 1 distinct row"):
        check_distinct(row_groups(features), target, Task.CLASSIFICATION, ["a", "b", "c"])


def test_a_class_whose_rows_copy_another_class_is_refused() -> None:
    features = np.concatenate([distinct_rows(40), np.repeat(distinct_rows(1), 3, axis=0)])
    target = np.array([0] * 20 + [1] * 20 + [2] * 3)
    with pytest.raises(InvalidInput, match="class 'c' has 3 row"):
        check_distinct(row_groups(features), target, Task.CLASSIFICATION, ["a", "b", "c"])


@pytest.mark.parametrize("seed", range(20))
def test_training_and_every_fold_hold_each_class_when_its_rows_repeat(seed: int) -> None:
    """A rare class of few distinct rows, each repeated unevenly: training holds it, and so
    does the training side of every cross-validation fold (else a fold's model knows
    fewer classes than its validation rows, and every trial fails)."""
    rare = np.repeat(np.full((3, 3), 500.0, dtype=np.float32) + np.arange(3)[:, None], [6, 1, 9], 0)
    features = np.concatenate([distinct_rows(120), rare])
    target = np.array([0] * 60 + [1] * 60 + [2] * len(rare))
    groups = row_groups(features)
    check_distinct(groups, target, Task.CLASSIFICATION, ["a", "b", "c"])
    splits = split_indices(target, Task.CLASSIFICATION, seed=seed, features=features)
    assert 2 in set(target[splits.train].tolist())
    rows = np.sort(np.concatenate([splits.train, splits.validation]))
    for train, _ in fold_indices(target, Task.CLASSIFICATION, rows, 5, seed, groups=groups):
        assert set(target[train].tolist()) == {0, 1, 2}

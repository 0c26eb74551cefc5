"""Choosing the winner: folds that cover every non-test row once (stratified), ties broken
by a proper score and then by size (never by trial order), and the spread of fold scores."""

from __future__ import annotations

import numpy as np
import pytest

from app.contracts.enums import Task
from app.datasets.splits import fold_indices, split_indices
from app.search.plan import uses_folds
from app.search.selection import best_of, within_noise
from app.search.trial_metrics import TrialMetrics
from app.tables import Trial


def trial(number: int, value: float, **metrics: float) -> Trial:
    return Trial(
        job_id=1,
        number=number,
        attempt=0,
        state="complete",
        params={},
        intermediate=[],
        value=value,
        values=[value],
        metrics=metrics,
    )


def test_folds_cover_the_non_test_rows_once_and_keep_class_shares() -> None:
    target = np.array([0] * 60 + [1] * 30 + [2] * 10)
    features = np.arange(100, dtype=np.float32).reshape(-1, 1)
    splits = split_indices(target, Task.CLASSIFICATION, seed=3, features=features)
    rows = np.sort(np.concatenate([splits.train, splits.validation]))
    folds = fold_indices(target, Task.CLASSIFICATION, rows, 5, seed=3, groups=splits.groups)
    validated = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(validated), rows)
    assert not set(validated) & set(splits.test)
    for train, val in folds:
        assert not set(train) & set(val)
        assert np.array_equal(np.sort(np.concatenate([train, val])), rows)
        counts = np.bincount(target[val], minlength=3)
        assert counts.min() >= 1 and abs(counts[0] / len(val) - 0.6) < 0.15


def test_small_data_is_cross_validated_unless_asked_otherwise() -> None:
    assert uses_folds("auto", 500) and not uses_folds("auto", 50_000)
    assert uses_folds("cv", 50_000) and not uses_folds("holdout", 100)


def test_a_tie_in_accuracy_goes_to_the_better_calibrated_trial() -> None:
    first = trial(0, 0.95, log_loss=0.40, params=100)
    calibrated = trial(1, 0.95, log_loss=0.12, params=5000)
    worse = trial(2, 0.93, log_loss=0.05, params=10)
    assert best_of([first, calibrated, worse], True, "classification") is calibrated
    assert best_of([calibrated, first, worse], True, "classification") is calibrated


def test_then_the_smaller_network_and_for_regression_rmse() -> None:
    big = trial(0, 0.9, log_loss=0.3, params=9000)
    small = trial(1, 0.9, log_loss=0.3, params=800)
    assert best_of([big, small], True, "classification") is small
    rough = trial(0, 0.81, rmse=2.0, params=10)
    sharp = trial(1, 0.81, rmse=1.5, params=10)
    assert best_of([rough, sharp], True, "regression") is sharp  # objective r2, tie
    assert (
        best_of([trial(0, 1.2, rmse=1.2), trial(1, 1.1, rmse=1.1)], False, "regression").number == 1
    )


def test_fold_summary_and_trials_within_noise() -> None:
    summary = TrialMetrics.folds_mean(
        [{"accuracy": 0.9, "log_loss": 0.3}, {"accuracy": 0.8, "log_loss": 0.5}], [4, 9], "accuracy"
    )
    assert summary.scores["accuracy"] == pytest.approx(0.85)
    assert summary.scores["log_loss"] == pytest.approx(0.4)
    assert summary.cv_scores == [0.9, 0.8] and summary.cv_folds == 2
    assert summary.cv_std == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert summary.refit_epochs == 8  # best at epochs 5 and 10 (1-based): 7.5, rounded up
    assert list(summary.stored()) == [
        "accuracy",
        "log_loss",
        "cv_folds",
        "cv_scores",
        "cv_std",
        "refit_epochs",
    ]  # the flat JSON a trial's row has always kept
    winner = trial(0, 0.9, cv_std=0.02)
    others = [winner, trial(1, 0.89), trial(2, 0.875), trial(3, 0.91)]
    assert within_noise(others, winner) == 2
    assert within_noise(others, trial(4, 0.9)) is None


def test_a_budget_alone_chooses_the_rest() -> None:
    from app.search.plan import with_budget_defaults
    from app.search.spec import SearchSpec

    small = with_budget_defaults(SearchSpec.model_validate({"timeout_s": 60}), 500)
    assert (small.max_trials, small.algorithm, small.parallelism, small.pruner) == (
        1000,
        "tpe",
        2,
        "median",
    )
    large = with_budget_defaults(SearchSpec.model_validate({"timeout_s": 60}), 50_000)
    assert large.pruner == "hyperband"
    given = with_budget_defaults(
        SearchSpec.model_validate({"timeout_s": 60, "algorithm": "random", "parallelism": 1}), 500
    )
    assert (given.algorithm, given.parallelism, given.max_trials) == ("random", 1, 1000)
    counted = SearchSpec.model_validate({"timeout_s": 60, "max_trials": 5})
    assert with_budget_defaults(counted, 500) == counted
    plain = SearchSpec.model_validate({})
    assert with_budget_defaults(plain, 500) == plain
    one_worker = with_budget_defaults(SearchSpec.model_validate({"timeout_s": 60}), 500, 1)
    assert one_worker.parallelism == 1  # what `kiln serve --workers 1` can run at once
    asked = with_budget_defaults(
        SearchSpec.model_validate({"timeout_s": 60, "parallelism": 3}), 500, 1
    )
    assert asked.parallelism == 3  # asked for: kept, and the result says what ran
    # every family that fits a table and is searched by default (forest: when asked for)
    assert small.families == ["mlp", "gbdt", "linear"]
    images = with_budget_defaults(SearchSpec.model_validate({"timeout_s": 60}), 500, 0, [1, 8, 8])
    assert images.families == ["cnn"]
    named = SearchSpec.model_validate({"timeout_s": 60, "families": ["gbdt"]})
    assert with_budget_defaults(named, 500).families == ["gbdt"]
    tuned = SearchSpec.model_validate({"timeout_s": 60, "init_from": {"model": "m", "version": 1}})
    assert with_budget_defaults(tuned, 500).families is None  # the network it starts from


def test_most_at_once_counts_overlapping_trials() -> None:
    from datetime import UTC, datetime, timedelta

    from app.search.plan import most_at_once

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    assert most_at_once([]) == 0
    assert most_at_once([(at(0), at(5)), (at(5), at(9)), (at(9), at(12))]) == 1  # end to end
    assert most_at_once([(at(0), at(5)), (at(1), at(3)), (at(2), at(9)), (at(6), at(7))]) == 3


def test_fold_data_places_each_folds_rows_for_out_of_fold_predictions() -> None:
    from app.search.selection import fold_data

    target = np.arange(100) % 2
    features = np.arange(100, dtype=np.float32).reshape(-1, 1)
    splits = split_indices(target, Task.CLASSIFICATION, seed=1, features=features)
    folds = fold_data(features, target, Task.CLASSIFICATION, splits, seed=1)
    assert len(folds) == 5
    placed = np.concatenate(folds.positions)
    assert np.array_equal(np.sort(placed), np.arange(len(folds.rows)))  # each row once
    for fold, positions in zip(folds.data, folds.positions, strict=True):
        assert np.array_equal(folds.rows[positions], fold.x_val[:, 0].astype(int))


def _probabilities(correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Two-class probabilities putting ``confidence`` on the true class where ``correct``."""
    p_true = np.where(correct, confidence, 1 - confidence)
    return np.stack([1 - p_true, p_true], axis=1)  # the true class is 1 everywhere


def test_an_average_that_is_better_calibrated_at_equal_accuracy_is_chosen() -> None:
    from app.search.selection import select_ensemble

    target = np.ones(8, dtype=np.int64)
    right = np.array([True] * 6 + [False] * 2)
    # Both trials are right on the same 6 rows: one overconfident, one hesitant.
    sharp = _probabilities(right, np.where(right, 0.99, 0.99))
    soft = _probabilities(right, np.where(right, 0.7, 0.6))
    choice = select_ensemble(
        [sharp, soft], target, "classification", "accuracy", True, max_members=2, steps=4
    )
    assert all(step["accuracy"] == 0.75 for step in choice.steps)
    assert choice.members == [0, 1] and choice.counts[1] >= 1
    best = choice.steps[sum(choice.counts) - 1]
    assert best["log_loss"] < choice.steps[0]["log_loss"]


def test_the_best_trial_alone_wins_when_averaging_does_not_help() -> None:
    from app.search.selection import select_ensemble

    target = np.array([0.0, 1.0, 2.0, 3.0])
    exact, off = target.reshape(-1, 1), (target + 1.0).reshape(-1, 1)
    choice = select_ensemble(
        [exact, off], target, "regression", "rmse", False, max_members=2, steps=3
    )
    assert choice.counts == [1, 0] and choice.steps[0]["rmse"] == 0.0


def test_selection_weights_what_helps_and_caps_the_members() -> None:
    from app.search.selection import select_ensemble

    target = np.zeros(6)
    # Errors that cancel in a 2:1 mix: 2 * (+0.5) + 1 * (-1.0) = 0.
    high = np.full((6, 1), 0.5)
    low = np.full((6, 1), -1.0)
    noise = np.array([[3.0], [-3.0], [3.0], [-3.0], [3.0], [-3.0]])
    choice = select_ensemble(
        [high, noise, low], target, "regression", "rmse", False, max_members=2, steps=6
    )
    assert choice.members == [0, 2] and choice.counts[0] == 2 * choice.counts[2]
    assert choice.steps[sum(choice.counts) - 1]["rmse"] == pytest.approx(0.0)
    capped = select_ensemble(
        [high, noise, low], target, "regression", "rmse", False, max_members=1, steps=6
    )
    assert capped.members == [0]  # one member allowed: the winner alone


def test_a_budget_cross_validates_a_table_it_can_afford_to() -> None:
    from app.search.plan import with_budget_defaults
    from app.search.spec import SearchSpec

    budget = SearchSpec.model_validate({"timeout_s": 60})
    # 4,250 rows x 19 columns = 80,750 cells <= 2,800 x 60, rows <= 100 x 60: five folds,
    # median stopping
    churn = with_budget_defaults(budget, 4_250, columns=19)
    assert churn.validation == "cv" and churn.pruner == "median"
    # 46,000 rows x 9 columns: one holdout split, Hyperband
    diamonds = with_budget_defaults(budget, 46_000, columns=9)
    assert diamonds.validation == "auto" and diamonds.pruner == "hyperband"
    # 8,963 rows x 8 columns (gapminder): few cells, but more rows than a minute folds
    gapminder = with_budget_defaults(budget, 8_963, columns=8)
    assert gapminder.validation == "auto" and gapminder.pruner == "hyperband"
    five_minutes = SearchSpec.model_validate({"timeout_s": 300})
    assert with_budget_defaults(five_minutes, 8_963, columns=8).validation == "cv"
    # Above 20,000 rows never: the holdout is large, and early trials subsample instead
    ten_minutes = SearchSpec.model_validate({"timeout_s": 600})
    assert with_budget_defaults(ten_minutes, 46_000, columns=9).validation == "auto"
    assert with_budget_defaults(ten_minutes, 19_000, columns=9).validation == "cv"
    asked = SearchSpec.model_validate({"timeout_s": 60, "validation": "holdout"})
    assert with_budget_defaults(asked, 4_250, columns=19).validation == "holdout"

"""The family scheduler's rules (``app.search.schedule``) on typed trial summaries, without
Optuna: every family gets a first trial, then the expected gain per second chooses, with a
floor share, dropped and too-slow families skipped; on a large table subsampled trials
first, then the better half promoted to every row. Also a network's cheap first
configuration, the stratified subsample, and the plan's note of families left out."""

from __future__ import annotations

import numpy as np
import pytest

from app.contracts.enums import TrialState
from app.search.left_out import TableSize, first_trial_seconds, left_out_families
from app.search.schedule import (
    FLOOR_SHARE,
    SUBSAMPLE_ROWS,
    SearchState,
    TrialRecord,
    cheap_start,
    choose_family,
    expected_gain,
    promoted,
    train_on_subsample,
)
from app.search.selection import stratified_subsample
from app.search.space import default_space
from app.search.spec import SearchSpec
from app.search.trial_metrics import TrialMetrics
from app.training.families.registry import Family

THREE = ("mlp", "gbdt", "linear")
DONE = TrialState.COMPLETE


def done(family: str, value: float, seconds: float = 1.0, rows: int | None = None) -> TrialRecord:
    return TrialRecord(family, DONE, seconds, value=value, train_rows=rows)


def state_of(*trials: TrialRecord, **fields: object) -> SearchState:
    """``trials`` in the order they ended (their ``ended`` numbered here)."""
    numbered = tuple(
        TrialRecord(t.family, t.state, t.seconds, t.value, t.train_rows, ended=float(index))
        for index, t in enumerate(trials)
    )
    values: dict[str, object] = {"families": THREE, "maximize": True, **fields}
    return SearchState(trials=numbered, **values)  # type: ignore[arg-type]


def test_every_family_gets_a_first_trial_cheapest_first() -> None:
    first = choose_family(state_of())
    assert first is not None and (first.family, first.cheap_start) == ("linear", True)
    second = choose_family(state_of(done("linear", 0.8)))
    assert second is not None and second.family == "gbdt"
    third = choose_family(state_of(done("linear", 0.8), done("gbdt", 0.85, 5.0)))
    assert third is not None and (third.family, third.cheap_start) == ("mlp", True)
    assert "no result yet" in third.reason and not third.subsample


def test_a_family_whose_first_trial_runs_is_not_given_a_second_first() -> None:
    running = TrialRecord("mlp", TrialState.RUNNING, 3.0)
    choice = choose_family(state_of(done("linear", 0.8), done("gbdt", 0.85, 5.0), running))
    assert choice is not None and choice.family in ("gbdt", "linear")
    assert not choice.cheap_start


def test_the_leader_that_still_varies_beats_a_settled_family_far_behind() -> None:
    trials = [
        done("linear", 0.80, 0.5),
        done("linear", 0.801, 0.5),
        done("linear", 0.80, 0.5),
        done("gbdt", 0.86, 5.0),
        done("gbdt", 0.88, 5.0),
        done("mlp", 0.84, 3.0),
        done("mlp", 0.85, 3.0),
    ]
    choice = choose_family(state_of(*trials))
    assert choice is not None and choice.family in ("gbdt", "mlp")
    assert "expected gain per second" in choice.reason
    # A family far behind whose values barely move is never the one to try next.
    assert choice.family != "linear"


def test_a_cheap_family_close_behind_is_worth_more_per_second_than_a_slow_leader() -> None:
    trials = [
        done("linear", 0.70, 0.5),
        done("linear", 0.72, 0.5),
        done("gbdt", 0.850, 20.0),
        done("gbdt", 0.852, 20.0),
        done("mlp", 0.845, 2.0),
        done("mlp", 0.849, 2.0),
    ]
    choice = choose_family(state_of(*trials))
    assert choice is not None and choice.family == "mlp"


def test_a_leader_that_stopped_improving_gives_way() -> None:
    improving = [done("gbdt", 0.86, 5.0), done("gbdt", 0.87, 5.0)]
    follower = [done("mlp", 0.84, 5.0), done("mlp", 0.86, 5.0)]
    base = [done("linear", 0.7, 0.5), done("linear", 0.71, 0.5)]
    fresh = choose_family(state_of(*base, *follower, *improving))
    assert fresh is not None and fresh.family == "gbdt"
    stale = [done("gbdt", 0.865, 5.0) for _ in range(8)]
    tired = choose_family(state_of(*base, *follower, *improving, *stale))
    assert tired is not None and tired.family == "mlp"


def test_a_family_under_its_floor_share_goes_first() -> None:
    trials = [done("linear", 0.7, 0.5)]
    trials += [done("gbdt", 0.85 + 0.001 * i, 5.0) for i in range(10)]
    trials += [done("mlp", 0.80 + 0.001 * i, 5.0) for i in range(10)]
    choice = choose_family(state_of(*trials))
    assert choice is not None and choice.family == "linear"
    assert f"{FLOOR_SHARE:.0%}" in choice.reason


def test_minimised_objectives_are_compared_the_other_way() -> None:
    trials = [
        done("linear", 3.0, 0.5),
        done("linear", 3.01, 0.5),
        done("gbdt", 1.2, 5.0),
        done("gbdt", 1.1, 5.0),
        done("mlp", 2.5, 5.0),
        done("mlp", 2.52, 5.0),
    ]
    choice = choose_family(state_of(*trials, maximize=False))
    assert choice is not None and choice.family == "gbdt"


def test_a_family_failing_twice_without_a_result_is_dropped() -> None:
    first = TrialRecord("mlp", TrialState.INFEASIBLE, 1.0)
    for second in (TrialState.FAILED, TrialState.STOPPED):
        failed = [first, TrialRecord("mlp", second, 1.0)]
        trials = [done("linear", 0.8), done("gbdt", 0.85), *failed]
        for _ in range(20):
            choice = choose_family(state_of(*trials))
            assert choice is not None and choice.family != "mlp"
            trials.append(done(choice.family, 0.8))
    once = choose_family(state_of(done("linear", 0.8), done("gbdt", 0.85), first))
    assert once is not None and once.family == "mlp"  # a second chance after one failure
    nothing = choose_family(
        SearchState(("mlp",), tuple(failed), maximize=True)  # every family dropped
    )
    assert nothing is None


def test_a_family_whose_trial_cannot_finish_in_the_time_left_is_skipped() -> None:
    trials = [done("linear", 0.8, 0.5), done("gbdt", 0.86, 30.0), done("mlp", 0.85, 4.0)]
    choice = choose_family(state_of(*trials, seconds_left=10.0))
    assert choice is not None and choice.family in ("mlp", "linear")
    untried = choose_family(state_of(seconds_left=5.0, first_trial_s={"linear": 9.0, "gbdt": 3.0}))
    assert untried is not None and untried.family == "gbdt"  # linear's estimate is too long
    late = choose_family(state_of(*trials, seconds_left=0.1))
    assert late is not None and late.family == "linear" and "quickest" in late.reason


def test_a_left_out_family_is_never_chosen() -> None:
    choice = choose_family(state_of(done("linear", 0.8), left_out=frozenset({"gbdt"})))
    assert choice is not None and choice.family == "mlp"


def large(*trials: TrialRecord) -> SearchState:
    return state_of(*trials, training_rows=35_000, subsample_rows=SUBSAMPLE_ROWS)


def sub(family: str, value: float, seconds: float = 1.0) -> TrialRecord:
    return done(family, value, seconds, rows=SUBSAMPLE_ROWS)


def test_a_large_table_fits_first_trials_on_the_subsample_then_promotes_the_better_half() -> None:
    first = choose_family(large())
    assert first is not None and first.subsample and first.family == "linear"
    pending = large(sub("linear", 0.80), sub("gbdt", 0.86, 5.0))
    assert all(train_on_subsample(pending, family) for family in THREE)
    ranked = large(sub("linear", 0.80, 0.5), sub("gbdt", 0.86, 5.0), sub("mlp", 0.84, 2.0))
    assert [train_on_subsample(ranked, family) for family in THREE] == [False, False, True]
    choice = choose_family(ranked)
    assert choice is not None and choice.family in ("gbdt", "mlp") and not choice.subsample
    # The others wait until the promoted families have full-data results, then rejoin.
    for _ in range(6):
        step = choose_family(ranked)
        assert step is not None and step.family != "linear"
        ranked = large(*ranked.trials, done(step.family, 0.87, 10.0, rows=35_000))
    assert train_on_subsample(ranked, "linear")


def test_a_family_within_the_margin_of_the_best_is_promoted_too() -> None:
    close = large(
        sub("linear", 0.860, 0.5),
        sub("gbdt", 0.862, 5.0),
        sub("mlp", 0.700, 2.0),
    )
    assert not train_on_subsample(close, "linear")
    assert train_on_subsample(close, "mlp")
    assert promoted(state_of(), []) == frozenset(THREE)  # not large: every row for all


def test_expected_gain_is_the_normal_tail_beyond_the_leader() -> None:
    assert expected_gain(0.9, 0.9, 0.01) == pytest.approx(0.01 * 0.3989, rel=1e-3)
    assert expected_gain(0.8, 0.9, 0.01) < 1e-20
    assert expected_gain(0.95, 0.9, 0.0) == pytest.approx(0.05)


def test_a_networks_first_trial_is_a_cheap_configuration() -> None:
    space = default_space(None, 60, families=(Family("mlp"), Family("gbdt")), table=True)
    fixed = cheap_start(space.dimensions_of(Family("mlp")))
    assert fixed == {
        "n_layers": 1,
        "batch_size": 256,
        "numeric_embedding": "none",
        "category_width": 0,
        "epochs": 10,
        "width_0": 64,
    }
    narrow = default_space(None, 5, families=(Family("mlp"),), table=False)
    dimensions = dict(narrow.dimensions_of(Family("mlp")))
    from dataclasses import replace

    dimensions["n_layers"] = replace(dimensions["n_layers"], low=2, high=3)
    dimensions["width"] = replace(dimensions["width"], low=8, high=32)
    dimensions["batch_size"] = replace(dimensions["batch_size"], choices=(16, 32))
    assert cheap_start(dimensions) == {
        "n_layers": 2,
        "batch_size": 32,
        "epochs": 5,
        "width_0": 32,
        "width_1": 32,
    }


def test_the_subsample_keeps_each_class_share_and_every_class() -> None:
    target = np.array([0] * 9_000 + [1] * 990 + [2] * 10)
    rows = stratified_subsample(target, "classification", 1_000, seed=3)
    assert len(rows) == 1_000 and list(np.bincount(target[rows])) == [900, 99, 1]
    assert np.array_equal(rows, stratified_subsample(target, "classification", 1_000, seed=3))
    assert not np.array_equal(rows, stratified_subsample(target, "classification", 1_000, 4))
    assert list(np.bincount(target[stratified_subsample(target, "classification", 3, 0)])) == [
        1,
        1,
        1,
    ]
    values = np.random.default_rng(0).normal(size=20_000)
    picked = stratified_subsample(values, "regression", 5_000, seed=1)
    deciles = np.quantile(values, np.linspace(0, 1, 11))
    assert list(np.histogram(values[picked], bins=deciles)[0]) == [500] * 10
    assert len(stratified_subsample(values[:100], "regression", 5_000, 0)) == 100


def test_a_trial_records_the_rows_it_was_fitted_on() -> None:
    metrics = TrialMetrics.trained({"accuracy": 0.9}, refit_epochs=4).on_rows(10_000)
    assert metrics.stored() == {"accuracy": 0.9, "refit_epochs": 4, "train_rows": 10_000}
    assert metrics.scores == {"accuracy": 0.9}


TABLE = TableSize(task="classification", shape="rows", non_test_rows=42_500, features=50, outputs=2)


def test_the_plan_says_why_each_family_is_left_out() -> None:
    budget = SearchSpec.model_validate({"timeout_s": 60, "families": list(THREE)})
    notes = {n.family: n.reason for n in left_out_families(budget, THREE, TABLE)}
    # 50,000 x 50 at 60 s: the network, the trees and the linear model all get trials.
    assert set(notes) == {"cnn", "forest"}
    assert "image-shaped rows" in notes["cnn"]
    assert notes["forest"] == "search.families does not name it"
    estimate = first_trial_seconds("mlp", TABLE, max_epochs=60)
    assert estimate is not None and estimate < 30
    wide = TableSize("classification", "rows", 42_500, 20_000, 2)
    too_wide = {n.family: n.reason for n in left_out_families(budget, THREE, wide)}
    assert "estimated at" in too_wide["mlp"] and "more than timeout_s allows" in too_wide["mlp"]
    plain = SearchSpec.model_validate({"max_trials": 4})
    defaults = {n.family: n.reason for n in left_out_families(plain, ("mlp",), TABLE)}
    assert "the network alone" in defaults["gbdt"]
    assert defaults["forest"] == "searched only when search.families names it"
    assert "mlp" not in defaults  # no budget: nothing is left out for time


def test_the_plan_never_leaves_out_every_family_it_searches() -> None:
    """A budget too short for any estimate still searches the cheapest family (the search
    would otherwise give its whole budget to whatever the sampler picked)."""
    tiny = SearchSpec.model_validate({"timeout_s": 1, "families": ["linear", "gbdt"]})
    notes = {n.family: n.reason for n in left_out_families(tiny, ("linear", "gbdt"), TABLE)}
    assert "linear" not in notes and "estimated at" in notes["gbdt"]
    alone = SearchSpec.model_validate({"timeout_s": 1, "families": ["gbdt"]})
    assert "gbdt" not in {n.family for n in left_out_families(alone, ("gbdt",), TABLE)}

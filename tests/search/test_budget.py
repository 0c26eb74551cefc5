"""The time model that plans a search's finish inside its budget (``app.search.budget``)."""

from __future__ import annotations

import pytest

from app.search.budget import (
    AVERAGE_CHOICE_S,
    COMPRESSION_SHARE,
    EXPORT_PER_MEMBER_S,
    EXPORT_S,
    FIRST_RESERVE_SHARE,
    MOST_RESERVE_SHARE,
    PLANNED_MEMBERS,
    REFIT_SHARE,
    ROWS_POWER,
    FinishModel,
    Phases,
    TrialCost,
    refit_seconds,
)
from app.training.families.registry import FAMILIES


def finish(**changes: object) -> FinishModel:
    values: dict[str, object] = {
        "budget_s": 60.0,
        "members": 1,
        "selection_rows": 850,
        "all_rows": 1000,
        "full_refit": True,
        "compresses": False,
    }
    values.update(changes)
    return FinishModel(**values)  # type: ignore[arg-type]


def test_a_refit_scales_the_trials_fit_by_the_rows_it_trains_on() -> None:
    # five folds of 4 s in all: 0.8 s a fit on 680 rows; a refit on 1000 rows
    cost = TrialCost(value=0.9, seconds=4.0, fits=5, rows=680)
    assert refit_seconds(cost, 1000) == pytest.approx(
        0.8 * (1000 / 680) ** ROWS_POWER * REFIT_SHARE
    )


def test_a_full_refit_plans_two_fits_and_selection_only_one() -> None:
    cost = TrialCost(value=0.9, seconds=2.0, fits=1, rows=500)
    both = finish().member_seconds(cost)
    one = finish(full_refit=False).member_seconds(cost)
    assert both == pytest.approx(refit_seconds(cost, 850) + refit_seconds(cost, 1000))
    assert one == pytest.approx(refit_seconds(cost, 850))


def test_the_reserve_starts_as_a_share_and_follows_the_best_trials() -> None:
    model = finish(members=2)
    margin = model.stop_margin_s()  # for the trials' stop and the wait for the last ones
    assert margin > 0
    assert model.reserve([], maximize=True) == pytest.approx(60 * FIRST_RESERVE_SHARE + margin)
    fast = TrialCost(value=0.95, seconds=1.0, fits=1, rows=500)
    slow_but_worse = TrialCost(value=0.5, seconds=30.0, fits=1, rows=500)
    middling = TrialCost(value=0.9, seconds=2.0, fits=1, rows=500)
    planned = model.reserve([slow_but_worse, middling, fast], maximize=True)
    # the average would be of the best two: the slow, worse trial is not planned for
    expected = (
        model.member_seconds(fast)
        + model.member_seconds(middling)
        + model.export_s([fast, middling])
    )
    expected += AVERAGE_CHOICE_S  # choosing the average's members
    assert planned == pytest.approx(expected + margin)
    # with rmse (lower is better) the slow trial is the best and is planned for, up to a share
    assert model.reserve([slow_but_worse, middling], maximize=False) == pytest.approx(
        60 * MOST_RESERVE_SHARE + margin
    )


def test_a_compression_chain_is_planned_as_a_share_of_the_budget() -> None:
    model = finish(compresses=True)
    assert model.reserve([], maximize=True) == pytest.approx(
        60 * (FIRST_RESERVE_SHARE + COMPRESSION_SHARE) + model.stop_margin_s()
    )


def test_a_step_is_kept_when_it_needs_at_most_a_sliver_more_than_is_left() -> None:
    model = finish()
    assert model.affordable(10.0, 10.0) and model.affordable(11.0, 10.0)  # 2% of 60 s
    assert not model.affordable(12.0, 10.0)


def test_phases_record_plan_time_and_notes_in_order() -> None:
    told: list[str] = []
    phases = Phases(tell=told.append)
    phases.add("trials", took_s=50.0, planned_s=52.0)
    phases.start("refit on non-test rows", 2.0)
    phases.note("the average of 3 trials was planned out")
    phases.start("export and checks", 1.5)
    phases.stop()
    phases.note("late")
    names = [phase.name for phase in phases.done]
    assert names == ["trials", "refit on non-test rows", "export and checks"]
    assert told == ["refit on non-test rows", "export and checks"]
    assert phases.done[1].note == "the average of 3 trials was planned out"
    assert phases.done[2].note == "late" and phases.done[2].planned_s == 1.5
    assert all(phase.took_s >= 0 for phase in phases.done)


def test_the_reserve_plans_for_a_typical_average_not_the_largest() -> None:
    model = finish(members=5)
    costs = [TrialCost(value=1.0 - i / 10, seconds=1.0, fits=1, rows=500) for i in range(6)]
    three = model.member_seconds(costs[0]) * PLANNED_MEMBERS
    expected = three + model.export_s(costs[:PLANNED_MEMBERS]) + AVERAGE_CHOICE_S
    assert model.reserve(costs, maximize=True) == pytest.approx(expected + model.stop_margin_s())


def test_a_tree_models_export_is_planned_by_its_learnt_numbers() -> None:
    """onnxmltools walks every node in Python: a large booster's export takes seconds."""
    model = finish()
    gbdt = FAMILIES["gbdt"].export_s_per_param
    assert gbdt > FAMILIES["forest"].export_s_per_param > FAMILIES["mlp"].export_s_per_param == 0
    network = TrialCost(value=0.9, seconds=1.0, fits=1, rows=500)
    trees = TrialCost(value=0.9, seconds=1.0, fits=1, rows=500, export_s=300_000 * gbdt)
    assert model.export_s([network]) == pytest.approx(EXPORT_S)
    assert model.export_s([trees]) == pytest.approx(EXPORT_S + 300_000 * gbdt)
    assert model.export_s([trees]) > EXPORT_S + 4.0  # 7.5 s: was planned as 3 s in all
    pair = model.export_s([network, trees])
    assert pair == pytest.approx(model.export_s([trees]) + 2 * EXPORT_PER_MEMBER_S)

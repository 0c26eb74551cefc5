"""The search space: defaults by dataset shape, overrides and their errors, the grid."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from app.core.errors import InvalidInput
from app.search.families import starting_points
from app.search.space import apply_overrides, default_space, fits, suggest
from app.training.families.registry import Family

MLP, GBDT, LINEAR = Family("mlp"), Family("gbdt"), Family("linear")


def test_default_space_follows_the_dataset() -> None:
    assert default_space(None, 60).network == "mlp"
    assert default_space([1, 8, 8], 60).network == "cnn"
    assert "kernel" in default_space([1, 8, 8], 60).dimensions
    fixed = default_space(None, 60, searched_architecture=False)
    assert fixed.network == "fixed" and "n_layers" not in fixed.dimensions
    assert default_space(None, 7).dimensions["epochs"].high == 7


def test_overrides_fix_narrow_and_choose() -> None:
    space = apply_overrides(
        default_space(None, 60),
        {
            "batch_size": 16,
            "n_layers": {"low": 2, "high": 2},
            "width": {"low": 32, "high": 64, "log": True},
            "activation": {"choices": ["relu", "gelu"]},
            "learning_rate": 0.01,
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        params = suggest(study.ask(), space)
        assert params["batch_size"] == 16 and params["n_layers"] == 2
        assert 32 <= int(params["width_0"]) <= 64 and 32 <= int(params["width_1"]) <= 64
        assert params["activation"] in ("relu", "gelu") and params["learning_rate"] == 0.01
        assert fits(space, params)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"depth": 3}, "search.space.depth: unknown dimension for an MLP search"),
        ({"kernel": 3}, "search.space.kernel: unknown dimension for an MLP search"),
        (
            {"width": {"low": 64, "high": 16}},
            "search.space.width: empty range, low 64 is above high 16",
        ),
        ({"width": "wide"}, "search.space.width: expected an integer, got 'wide'"),
        ({"n_layers": 2.5}, "search.space.n_layers: expected an integer, got 2.5"),
        ({"n_layers": 0}, "search.space.n_layers: 0 is outside 1 to 8"),
        ({"dropout": {"low": 0.1, "high": 2}}, "search.space.dropout.high: 2 is outside"),
        (
            {"learning_rate": {"low": 0, "high": 0.1}},
            "search.space.learning_rate.low: 0 is outside",
        ),
        ({"activation": "swish"}, "search.space.activation: 'swish' is not one of"),
        (
            {"activation": {"low": 1, "high": 2}},
            "search.space.activation: a categorical dimension takes a value or choices",
        ),
        ({"optimizer": {"choices": []}}, "search.space.optimizer.choices: must be a non-empty"),
        ({"width": {"low": 8, "step": 2}}, "search.space.width: unknown key(s) ['step']"),
        ({"batch_norm": 1}, "search.space.batch_norm: 1 is not one of [False, True]"),
        ({"batch_size": True}, "search.space.batch_size: expected an integer, got True"),
        ({"epochs": 500}, "search.space.epochs: 500 is outside 1 to 60"),
    ],
)
def test_bad_overrides_name_the_path(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        apply_overrides(default_space(None, 60), overrides)
    assert message in raised.value.message


def test_grid_is_finite_and_counts_its_points() -> None:
    space = apply_overrides(
        default_space(None, 60),
        {
            "n_layers": {"low": 1, "high": 2},
            "width": {"low": 16, "high": 256, "log": True},
            "activation": "relu",
            "dropout": 0.0,
            "batch_norm": False,
            "optimizer": "adam",
            "learning_rate": 0.01,
            "weight_decay": 1e-4,
            "l1": 0.0,
            "batch_size": 64,
            "epochs": 10,
            "lr_schedule": "none",
            "patience": 0,
        },
    )
    grid = space.grid()
    assert grid["n_layers"] == [1, 2] and grid["width"] == [16, 64, 256]
    assert space.grid_size() == 6
    assert default_space(None, 60).grid_size() > 10_000


def test_several_families_share_one_space_and_a_trial_samples_one() -> None:
    space = default_space(None, 20, families=(MLP, GBDT, LINEAR))
    assert space.searched == (MLP, GBDT, LINEAR)
    assert set(space.dimensions_of(LINEAR)) == {"linear_c"}
    assert "n_layers" not in space.dimensions_of(GBDT)
    assert not any(name.startswith("gbdt_") for name in space.dimensions_of(MLP))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        params = suggest(study.ask(), space)
        family = space.family_of(params)
        seen.add(family)
        own = set(space.dimensions_of(family))
        assert set(params) - {"family"} <= own | {f"width_{i}" for i in range(8)}
        assert fits(space, params)
    assert seen == set(space.searched)


def test_one_family_keeps_the_parameters_as_they_were() -> None:
    space = default_space(None, 20, families=(GBDT,))
    params = suggest(optuna.create_study().ask(), space)
    assert "family" not in params and space.family_of(params) == GBDT
    assert not fits(space, {**params, "family": "gbdt"})
    assert space.network == "none"


def test_starting_points_go_cheapest_first_and_respect_overrides() -> None:
    space = apply_overrides(
        default_space(None, 20, families=(MLP, GBDT, LINEAR)),
        {"gbdt_num_leaves": {"low": 4, "high": 8}, "linear_c": 0.1},
    )
    points = starting_points(space)
    # every family gets a point early: round robin, cheapest family first
    assert [point["family"] for point in points][:3] == ["linear", "gbdt", "mlp"]
    assert points[0]["linear_c"] == 0.1
    assert all(4 <= p["gbdt_num_leaves"] <= 8 for p in points if p["family"] == "gbdt")
    assert all(fits(space, point) for point in points)
    assert starting_points(default_space(None, 20, families=(GBDT,))) == []


def test_a_table_mlp_searches_how_it_reads_the_features() -> None:
    space = default_space(None, 20, table=True)
    assert {"scaling", "numeric_embedding", "embedding_width", "category_width"} <= set(
        space.dimensions
    )
    assert "numeric_embedding" not in default_space(None, 20).dimensions  # rows, not a table
    assert "numeric_embedding" not in default_space([1, 8, 8], 20, table=True).dimensions
    mixed = default_space(None, 20, families=(MLP, GBDT), table=True)
    assert "embedding_width" in mixed.dimensions_of(MLP)
    assert "embedding_width" not in mixed.dimensions_of(GBDT)
    fixed = apply_overrides(space, {"numeric_embedding": "piecewise", "category_width": 0})
    assert fixed.dimensions["numeric_embedding"].choices == ("piecewise",)
    with pytest.raises(InvalidInput, match=r"search.space.numeric_embedding: 'fourier'"):
        apply_overrides(space, {"numeric_embedding": "fourier"})


def test_every_numeric_dimension_takes_choices_and_a_range_of_integers() -> None:
    space = apply_overrides(
        default_space(None, 20, table=True),
        {
            "n_layers": {"choices": [1, 3.0]},
            "batch_size": {"low": 16, "high": 64, "log": True},
            "embedding_width": {"low": 2, "high": 6},
            "category_width": {"choices": [0, 8, 8]},
            "width": 32.0,
        },
    )
    dims = space.dimensions
    assert dims["n_layers"].choices == (1, 3) and dims["category_width"].choices == (0, 8)
    assert (dims["batch_size"].kind, dims["batch_size"].low, dims["batch_size"].log) == (
        "int",
        16,
        True,
    )
    assert dims["width"].low == 32 and isinstance(dims["width"].low, int)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        params = suggest(study.ask(), space)
        assert params["n_layers"] in (1, 3) and 16 <= int(params["batch_size"]) <= 64
        assert all(params[f"width_{layer}"] == 32 for layer in range(int(params["n_layers"])))
        assert fits(space, params)


def test_a_range_without_log_is_linear_where_a_log_scale_cannot_reach() -> None:
    space = apply_overrides(
        default_space(None, 20),
        {"weight_decay": {"low": 0, "high": 0.01}, "learning_rate": {"low": 0.001, "high": 0.1}},
    )
    assert not space.dimensions["weight_decay"].log
    assert space.dimensions["learning_rate"].log  # the default's scale, where it can
    with pytest.raises(InvalidInput, match=r"search.space.weight_decay: a log range needs"):
        apply_overrides(default_space(None, 20), {"weight_decay": {"low": 0, "log": True}})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"width": {"choices": [32], "low": 16}},
            "search.space.width: choices or a range, not both",
        ),
        ({"width": {"low": 2**70}}, "search.space.width.low: 1180591620717411303424 is outside"),
        ({"n_layers": {"choices": [1, 2.5]}}, "search.space.n_layers.choices[1]: expected an"),
        ({"batch_size": {"low": 8.5}}, "search.space.batch_size.low: expected an integer"),
        ({"width": {"low": 8, "high": 16, "log": "yes"}}, "search.space.width.log: must be"),
    ],
)
def test_mixed_and_malformed_forms_name_the_path(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        apply_overrides(default_space(None, 60), overrides)
    assert message in raised.value.message


def test_a_dimension_whose_default_reaches_0_may_be_fixed_at_0() -> None:
    space = apply_overrides(
        default_space(None, 20, transfer_layers=3), {"frozen_layers": 0, "head_warmup_epochs": 0}
    )
    assert space.dimensions["frozen_layers"].high == 0
    assert space.dimensions["head_warmup_epochs"].high == 0
    gbdt = default_space(None, 20, families=(GBDT,))
    with pytest.raises(InvalidInput, match=r"gbdt_num_leaves: 1 is outside 2 to"):
        apply_overrides(gbdt, {"gbdt_num_leaves": 1})  # LightGBM refuses a tree of one leaf

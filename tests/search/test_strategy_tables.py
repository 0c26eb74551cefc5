"""The algorithm and pruner tables hold exactly the names the job spec accepts, and a
name with no entry fails loudly (it never falls back to another algorithm)."""

from __future__ import annotations

from typing import get_args

import optuna
import pytest

from app.search.space import SearchSpace
from app.search.spec import Algorithm, Pruner
from app.search.strategy import (
    ALGORITHM_TABLE,
    MULTI_OBJECTIVE,
    PRUNER_TABLE,
    make_pruner,
    make_sampler,
)


def test_every_name_the_spec_accepts_has_an_entry_and_no_other() -> None:
    assert set(ALGORITHM_TABLE) == set(get_args(Algorithm))
    assert set(PRUNER_TABLE) == set(get_args(Pruner))
    assert set(MULTI_OBJECTIVE) == {"random", "grid", "tpe", "nsga2"}


@pytest.mark.parametrize("name", get_args(Pruner))
def test_each_pruner_builds(name: str) -> None:
    assert isinstance(make_pruner(name, max_epochs=10), optuna.pruners.BasePruner)


def test_unknown_names_fail_loudly() -> None:
    with pytest.raises(ValueError, match="unknown pruner 'medain'"):
        make_pruner("medain", max_epochs=10)
    with pytest.raises(ValueError, match="unknown algorithm 'bayes'"):
        make_sampler("bayes", seed=0, space=SearchSpace({}, "mlp"), max_trials=4, parallel=False)

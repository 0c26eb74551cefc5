"""Search algorithms and early-stopping rules by name, built on Optuna (plus the two
local-search samplers of ``app.search.local``). Each is one entry of a table keyed by the
names the job spec accepts (``Algorithm`` and ``Pruner`` in ``app.search.spec``, the one list
of them); a completeness test holds the tables and the names together, and a name with no
entry fails loudly instead of falling back to another algorithm."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import optuna

from app.search.local import AnnealingSampler, HillClimbSampler
from app.search.space import SearchSpace
from app.search.spec import Algorithm, Pruner

# Optuna marks some of these samplers' options experimental; they are what we want.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class SamplerArgs:
    """What a sampler factory may use: ``seed`` differs per worker process."""

    seed: int
    space: SearchSpace
    max_trials: int
    parallel: bool

    @property
    def startup(self) -> int:
        """Random trials before a model-based sampler starts modelling."""
        return max(3, min(10, self.max_trials // 4))

    @property
    def population(self) -> int:
        return max(4, min(50, self.max_trials // 4))


@dataclass(frozen=True)
class AlgorithmEntry:
    """One search algorithm: how to build its sampler, and whether it searches several
    objectives at once (a Pareto front) or one."""

    build: Callable[[SamplerArgs], optuna.samplers.BaseSampler]
    multi_objective: bool = False


def _genetic(args: SamplerArgs) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=args.seed, population_size=args.population)


ALGORITHM_TABLE: dict[str, AlgorithmEntry] = {
    "random": AlgorithmEntry(lambda a: optuna.samplers.RandomSampler(seed=a.seed), True),
    "grid": AlgorithmEntry(
        lambda a: optuna.samplers.GridSampler(a.space.grid(), seed=a.seed), True
    ),
    "tpe": AlgorithmEntry(
        lambda a: optuna.samplers.TPESampler(
            seed=a.seed,
            n_startup_trials=a.startup,
            multivariate=True,
            group=True,
            constant_liar=a.parallel,
        ),
        True,
    ),
    "gp": AlgorithmEntry(
        lambda a: optuna.samplers.GPSampler(
            seed=a.seed, n_startup_trials=a.startup, warn_independent_sampling=False
        )
    ),
    # CMA-ES: categorical dimensions are sampled at random by Optuna.
    "cmaes": AlgorithmEntry(
        lambda a: optuna.samplers.CmaEsSampler(
            seed=a.seed, n_startup_trials=a.startup, warn_independent_sampling=False
        )
    ),
    "evolution": AlgorithmEntry(_genetic),
    "nsga2": AlgorithmEntry(_genetic, True),
    "hillclimb": AlgorithmEntry(lambda a: HillClimbSampler(seed=a.seed)),
    "anneal": AlgorithmEntry(lambda a: AnnealingSampler(seed=a.seed)),
}
PRUNER_TABLE: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "none": lambda _max_epochs: optuna.pruners.NopPruner(),
    "median": lambda _max_epochs: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    "successive_halving": lambda _max_epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
    "hyperband": lambda max_epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max_epochs, reduction_factor=3
    ),
}
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
PRUNERS: tuple[str, ...] = get_args(Pruner)
MULTI_OBJECTIVE = tuple(name for name in ALGORITHMS if ALGORITHM_TABLE[name].multi_objective)


def make_sampler(
    algorithm: str, *, seed: int, space: SearchSpace, max_trials: int, parallel: bool
) -> optuna.samplers.BaseSampler:
    """The sampler for ``algorithm``; ``seed`` differs per worker process."""
    entry = ALGORITHM_TABLE.get(algorithm)
    if entry is None:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {list(ALGORITHMS)}")
    return entry.build(
        SamplerArgs(seed=seed, space=space, max_trials=max_trials, parallel=parallel)
    )


def make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    """Early stopping of trials whose per-epoch validation metric lags."""
    build = PRUNER_TABLE.get(name)
    if build is None:
        raise ValueError(f"unknown pruner {name!r}; known: {list(PRUNERS)}")
    return build(max_epochs)

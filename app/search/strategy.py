"""Search algorithms and early-stopping rules by name, built on Optuna (plus the two
local-search samplers of ``app.search.local``)."""

from __future__ import annotations

import warnings

import optuna

from app.search.local import AnnealingSampler, HillClimbSampler
from app.search.space import SearchSpace

ALGORITHMS = ("random", "grid", "tpe", "gp", "cmaes", "evolution", "hillclimb", "anneal",
              "nsga2")
MULTI_OBJECTIVE = ("random", "grid", "tpe", "nsga2")
PRUNERS = ("none", "median", "successive_halving", "hyperband")

# Optuna marks some of these samplers' options experimental; they are what we want.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(algorithm: str, *, seed: int, space: SearchSpace, max_trials: int,
                 parallel: bool) -> optuna.samplers.BaseSampler:
    """The sampler for ``algorithm``; ``seed`` differs per worker process."""
    startup = max(3, min(10, max_trials // 4))
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                          multivariate=True, group=True,
                                          constant_liar=parallel)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup,
                                         warn_independent_sampling=False)
    if algorithm == "cmaes":  # categorical dimensions are sampled at random by Optuna
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup,
                                            warn_independent_sampling=False)
    if algorithm in ("evolution", "nsga2"):
        population = max(4, min(50, max_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if algorithm == "hillclimb":
        return HillClimbSampler(seed=seed)
    if algorithm == "anneal":
        return AnnealingSampler(seed=seed)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    """Early stopping of trials whose per-epoch validation metric lags."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()

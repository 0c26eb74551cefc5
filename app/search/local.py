"""Local-search samplers Optuna does not have: hill climbing with random restarts, and
simulated annealing. Both move from an anchor configuration to a neighbour that differs in
one or two parameters; they differ in which configuration is the anchor.

Each worker process runs its own instance, seeded, so a run with parallelism 1 is
reproducible; with parallelism k, k climbs (or chains) share the study's history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from app.core.errors import BrokenInvariant

STEP = 0.15  # a move's standard deviation, as a share of the (log-)range


class HillClimbSampler(BaseSampler):
    """Greedy local search around the best trial of the current climb; after
    ``restart_after`` completed trials without improving it, restarts from a random point
    (and with probability ``restart_probability`` at any step)."""

    def __init__(
        self,
        seed: int | None = None,
        *,
        n_startup_trials: int = 2,
        restart_after: int = 6,
        restart_probability: float = 0.05,
    ) -> None:
        self._rng = np.random.RandomState(seed)
        self.n_startup_trials = n_startup_trials
        self.restart_after = restart_after
        self.restart_probability = restart_probability
        self._climb_start = 0  # trials numbered from here belong to the current climb
        self._anchor: dict[str, Any] | None = None
        self._mutate: set[str] = set()

    def reseed_rng(self) -> None:
        self._rng.seed()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    # -- choosing the anchor ------------------------------------------------------------
    def _completed(self, study: Study) -> list[FrozenTrial]:
        return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def _better(self, study: Study, value: float, than: float) -> bool:
        return value > than if study.direction == StudyDirection.MAXIMIZE else value < than

    def _best_of(self, study: Study, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        best: FrozenTrial | None = None
        for candidate in trials:
            if candidate.value is not None and (
                best is None or self._better(study, candidate.value, best.value or 0.0)
            ):
                best = candidate
        return best

    def _choose_anchor(self, study: Study, trial: FrozenTrial) -> FrozenTrial | None:
        climb = [t for t in self._completed(study) if t.number >= self._climb_start]
        best = self._best_of(study, climb)
        if best is None:
            return None
        stale = sum(1 for t in climb if t.number > best.number)
        if stale >= self.restart_after or self._rng.rand() < self.restart_probability:
            self._climb_start = trial.number  # this trial is a random restart
            return None
        return best

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        anchor = None
        if len(self._completed(study)) >= self.n_startup_trials:
            anchor = self._choose_anchor(study, trial)
        self._anchor = dict(anchor.params) if anchor is not None else None
        self._mutate = set()
        if anchor is not None:  # only dimensions that can move (not fixed by the space)
            names = sorted(
                name
                for name, distribution in anchor.distributions.items()
                if not distribution.single()
            )
            if not names:
                return
            count = 1 if self._rng.rand() < 0.7 or len(names) < 2 else 2
            picked = self._rng.choice(len(names), size=count, replace=False)
            self._mutate = {names[int(index)] for index in picked}

    # -- sampling -----------------------------------------------------------------------
    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        anchor = self._anchor
        if (
            anchor is None
            or param_name not in anchor
            or not param_distribution._contains(
                param_distribution.to_internal_repr(anchor[param_name])
            )
        ):
            return self._uniform(param_distribution)
        value = anchor[param_name]
        if param_name in self._mutate:
            return self._neighbour(value, param_distribution)
        return value

    def _uniform(self, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[self._rng.randint(len(distribution.choices))]
        if not isinstance(distribution, FloatDistribution | IntDistribution):
            raise BrokenInvariant(f"not a numeric distribution: {distribution!r}")
        low, high = float(distribution.low), float(distribution.high)
        if distribution.log:
            point = math.exp(self._rng.uniform(math.log(low), math.log(high)))
        else:
            point = self._rng.uniform(low, high)
        return self._snap(point, distribution)

    def _neighbour(self, value: Any, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            others = [c for c in distribution.choices if c != value]
            return others[self._rng.randint(len(others))] if others else value
        if not isinstance(distribution, FloatDistribution | IntDistribution):
            raise BrokenInvariant(f"not a numeric distribution: {distribution!r}")
        low, high = float(distribution.low), float(distribution.high)
        if low == high:
            return value
        warp = math.log if distribution.log else (lambda x: x)
        span = warp(high) - warp(low)
        for _ in range(8):  # try for a neighbour that actually differs
            moved = warp(float(value)) + self._rng.normal(0.0, STEP * span)
            moved = min(max(moved, warp(low)), warp(high))
            point = self._snap(math.exp(moved) if distribution.log else moved, distribution)
            if point != value:
                return point
        return value

    @staticmethod
    def _snap(point: float, distribution: FloatDistribution | IntDistribution) -> Any:
        low, high = distribution.low, distribution.high
        if isinstance(distribution, IntDistribution):
            steps = round((point - low) / distribution.step)
            return int(min(max(low + steps * distribution.step, low), high))
        if distribution.step is not None:
            steps = round((point - low) / distribution.step)
            point = low + steps * distribution.step
        return float(min(max(point, low), high))


class AnnealingSampler(HillClimbSampler):
    """Simulated annealing: the same moves, anchored on the chain's current configuration.
    A worse neighbour becomes current with probability exp(-relative loss / temperature);
    the temperature starts at ``initial_temperature`` and is multiplied by ``cooling``
    after every trial this worker finishes."""

    def __init__(
        self,
        seed: int | None = None,
        *,
        initial_temperature: float = 0.05,
        cooling: float = 0.85,
        n_startup_trials: int = 1,
    ) -> None:
        super().__init__(seed, n_startup_trials=n_startup_trials)
        self.temperature = initial_temperature
        self.cooling = cooling
        self._current: FrozenTrial | None = None

    def _choose_anchor(self, study: Study, trial: FrozenTrial) -> FrozenTrial | None:
        if self._current is None:
            self._current = self._best_of(study, self._completed(study))
        return self._current

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        if state != TrialState.COMPLETE or not values:
            return
        value = float(values[0])
        current = self._current
        if current is None or current.value is None or self._better(study, value, current.value):
            self._current = _with_value(trial, value)
        else:
            loss = abs(value - current.value) / max(abs(current.value), 1e-9)
            if self._rng.rand() < math.exp(-loss / max(self.temperature, 1e-12)):
                self._current = _with_value(trial, value)
        self.temperature *= self.cooling


def _with_value(trial: FrozenTrial, value: float) -> FrozenTrial:
    """The trial as finished (after_trial sees it before its value is stored)."""
    return optuna.trial.create_trial(
        params=trial.params, distributions=trial.distributions, value=value
    )

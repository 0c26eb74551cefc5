"""A search over several model families: every family's starting points first (learned
for the table's traits: ``app.search.portfolio``), each family's share of the result,
and the reference scores every search reports (a constant prediction and a linear model,
on the winner's evidence)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from app.contracts.results import FamilyScore, ReferenceScores
from app.evaluation.names import COST_METRICS
from app.search.fit import quality_of
from app.search.fit_tables import fit_family
from app.search.portfolio import (
    TableTraits,
    clipped,
    dataset_traits,
    portfolio_points,
    seed_count,
)
from app.search.run import SearchRun
from app.search.space import FAMILY_KEY, Dimension, SearchSpace
from app.tables import Trial
from app.training.families.linear import NAME as LINEAR
from app.training.families.registry import AnyFamily, Family, cheapest_first
from app.training.train import TrainData

SEEDED_ATTR = "families_seeded"
SPARE_POINTS = 3  # more learned points than wanted: clipping to the space may merge some


def _family_points(
    family: AnyFamily, dimensions: dict[str, Dimension], traits: TableTraits | None
) -> list[dict[str, Any]]:
    """One family's starting points inside the space, best first, without repeats: the
    portfolio's for the table's traits, else (a family it holds no evidence for) the
    family's declared ``starting_points``."""
    count = seed_count(len(dimensions))
    learned = portfolio_points(traits, family.name, count + SPARE_POINTS)
    offered = learned or [family.stored(start) for start in family.starting_points]
    # A table family's parameter the point does not name (one added after the portfolio
    # was learned) takes its default, not the sampler's draw.
    defaults = {} if family.trains_network else family.stored(family.params({}))
    points: list[dict[str, Any]] = []
    for point in offered:
        inside = clipped({**defaults, **point}, dimensions)
        if inside not in points:
            points.append(inside)
    return points[:count]


def starting_points(space: SearchSpace, traits: TableTraits | None = None) -> list[dict[str, Any]]:
    """The stored parameters of the starting points of the families this space searches,
    tried before the sampler's own choices: the learned portfolio's for a table of
    ``traits`` (``app.search.portfolio``; None: its suite-wide order), clipped to the
    (possibly overridden) space. Round robin, cheapest family first, so that every family
    gives evidence early: each family's first (cheap) point, then each one's second, ...
    A search of one family has none (the sampler's own choices from the start)."""
    if len(space.searched) < 2:
        return []
    per_family = [
        [
            {FAMILY_KEY: family.name, **point}
            for point in _family_points(family, space.dimensions_of(Family(family.name)), traits)
        ]
        for family in cheapest_first()
        if family.name in space.searched
    ]
    for points in per_family:
        if points:
            points[0] = _cheapened(points[0], space)
    rounds = max((len(points) for points in per_family), default=0)
    return [points[turn] for turn in range(rounds) for points in per_family if turn < len(points)]


# A family's first point bounds what sets its cost, so that its evidence comes early on any
# table: the portfolio's LightGBM points were learned on a holdout of up to 8,000 rows, and
# the same point on 5 folds of a 10-class table (scikit-learn's digits) ran 52 s of a 60 s
# budget on a loaded 2-core machine. (A network's first trial is kept small by the
# scheduler's cheap start, and its learned points are of few epochs.)
CHEAP_FIRST: dict[str, dict[str, tuple[str, float]]] = {
    "gbdt": {"gbdt_learning_rate": ("at_least", 0.2), "gbdt_rounds": ("at_most", 200)},
}


def _cheapened(point: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """``point`` with its cost-setting values bounded by ``CHEAP_FIRST``, within the space."""
    bounds = CHEAP_FIRST.get(str(point[FAMILY_KEY]), {})
    dimensions = space.dimensions_of(Family(str(point[FAMILY_KEY])))
    cheap = dict(point)
    for name, (direction, bound) in bounds.items():
        if name not in cheap or name not in dimensions:
            continue
        value = max(cheap[name], bound) if direction == "at_least" else min(cheap[name], bound)
        cheap.update(clipped({name: value}, dimensions))
    return cheap


def search_traits(run: SearchRun) -> TableTraits:
    """The traits of the search's table: its non-test rows, columns, classes, and the
    training rows' target."""
    return dataset_traits(
        run.dataset,
        rows=len(run.splits.train) + len(run.splits.validation),
        train_target=run.arrays.target[run.splits.train],
    )


def seed_families(run: SearchRun, left_out: Collection[str] = ()) -> None:
    """Queue the starting points once per study (the first worker to open it), none of a
    family the plan leaves out (``app.search.left_out``)."""
    if run.study.user_attrs.get(SEEDED_ATTR):
        return
    points = [
        point
        for point in starting_points(run.plan.space, search_traits(run))
        if point[FAMILY_KEY] not in left_out
    ]
    for point in points:
        run.study.enqueue_trial(point, skip_if_exists=True)
    run.study.set_user_attr(SEEDED_ATTR, len(points) or -1)


def family_scores(run: SearchRun, complete: list[Trial]) -> list[FamilyScore]:
    """Each searched family's complete trials and its best primary value."""
    objective = run.plan.objectives[0]
    scores = []
    for family in run.plan.space.searched:
        own = [t for t in complete if run.plan.space.family_of(t.params or {}) == family]
        best = None
        if own:
            pick = max if objective.maximize else min
            best = pick(own, key=lambda t: float(t.values[0]))  # type: ignore[index]
        scores.append(
            FamilyScore(
                family=str(family),
                trials=len(own),
                best_trial=best.number if best else None,
                best=float(best.values[0]) if best else None,  # type: ignore[index]
            )
        )
    return scores


def _evidence(run: SearchRun) -> list[TrainData]:
    """What trials were scored on: the holdout pair, or every fold."""
    return list(run.folds.data) if run.folds is not None else [run.data]


def _constant(run: SearchRun, pair: TrainData) -> np.ndarray:
    """The training rows' class shares (or mean), predicted for every validation row."""
    rows = len(pair.y_val)
    if run.dataset.class_labels:
        width = len(run.dataset.class_labels)
        counts = np.bincount(pair.y_train.astype(np.int64), minlength=width).astype(np.float64)
        shares = (counts + 1e-6) / (counts + 1e-6).sum()
        return np.tile(shares.astype(np.float32), (rows, 1))
    return np.full((rows, 1), float(np.mean(pair.y_train)), dtype=np.float32)


def reference_metric(run: SearchRun) -> str:
    """The first quality objective (a cost objective has no reference): what is compared."""
    quality = [o.metric for o in run.plan.objectives if o.metric not in COST_METRICS]
    return quality[0] if quality else run.plan.pruning_metric


def reference_scores(
    run: SearchRun, winner: dict[str, Any], complete: list[Trial]
) -> ReferenceScores | None:
    """The constant prediction's and a linear model's score beside the winner's
    (``winner``: its validation metrics), on the evidence its trials were scored on."""
    metric = reference_metric(run)
    if metric not in winner:
        return None
    pairs = _evidence(run)
    baseline = float(
        np.mean([quality_of(run, _constant(run, pair), pair.y_val)[metric] for pair in pairs])
    )
    linear_trials = [
        t
        for t in complete
        if run.plan.space.family_of(t.params or {}) == LINEAR and metric in (t.metrics or {})
    ]
    maximize = next((o.maximize for o in run.plan.objectives if o.metric == metric), True)
    if linear_trials:
        pick = max if maximize else min
        best = pick(linear_trials, key=lambda t: float((t.metrics or {})[metric]))
        linear, trial = float((best.metrics or {})[metric]), best.number
    else:
        linear, trial = _fitted_linear(run, pairs, metric), None
    return ReferenceScores(
        metric=metric,
        winner=float(winner[metric]),
        baseline=baseline,
        linear=linear,
        linear_trial=trial,
    )


def _fitted_linear(run: SearchRun, pairs: list[TrainData], metric: str) -> float:
    """A default linear model's score over ``pairs`` (the search had no linear trial)."""
    scores = []
    for pair in pairs:
        model = fit_family(
            run, Family(LINEAR), {}, pair, seed=run.spec.seed, keep_going=lambda: None
        )
        output = model.predict_rows(pair.x_val).astype(np.float32)
        scores.append(quality_of(run, output, pair.y_val)[metric])
    return float(np.mean(scores))

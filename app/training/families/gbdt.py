"""The ``gbdt`` family: LightGBM on a table's encoded features, boosting until the watched
rows stop improving (a refit boosts the rounds they found), exported with onnxmltools to an
``ai.onnx.ml`` TreeEnsemble whose probabilities (or values) are the graph's one output.
LightGBM and onnxmltools are imported where a fit or an export needs them (never by the
gateway, which reads only the declaration)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
import onnx

from app.training.families.base import (
    Dimension,
    FamilyParams,
    SpaceContext,
    TableFamily,
    float_range,
    int_range,
    integer_choice,
)
from app.training.onnx_io import INPUT_NAME, OUTPUT_NAME
from app.training.table_models import (
    FitOptions,
    ModelDescription,
    TableData,
    TableModel,
    class_probabilities,
)

if TYPE_CHECKING:
    import lightgbm

NAME = "gbdt"
CONVERTER_OPSET = 15  # the newest default-domain opset onnxmltools writes
EARLY_STOPPING_ROUNDS = 50
THRESHOLDS = "threshold="
LEAVES = "num_leaves="
CATEGORY_SPLITS = "num_cat="
CATEGORY_SETS = "cat_threshold="
# onnxmltools parses a tree recursively, a frame per node on a path, and a split on a
# category set is a chain of one node per category: a few such splits deep pass Python's
# default limit of 1,000 frames. The limit is raised to what the largest tree could need.
RECURSION_MARGIN = 1_000
CHECK_EVERY_ROUNDS = 10
CATEGORY_PARAMS = ("min_data_per_group", "cat_smooth")  # searched where a feature is a code
CATEGORY_L2 = 1.0  # L2 on a category split's groups (LightGBM's default 10)
MAX_CATEGORIES_PER_SPLIT = 64  # categories one side of a split may hold (LightGBM's 32)


class GbdtParams(FamilyParams):
    """LightGBM's own space: ``rounds`` is the most it boosts; early stopping on the
    validation rows (or the first fold) decides how many it keeps, and a refit repeats
    that count. Defaults: LightGBM's (no regularisation), 500 rounds."""

    # LightGBM refuses a tree of one leaf: an override may not go below 2
    num_leaves: Annotated[int, int_range(4, 256, log=True, minimum=2, maximum=131_072)] = 31
    max_depth: Annotated[int, integer_choice(-1, 4, 6, 8, 12, minimum=-1, maximum=64)] = -1
    learning_rate: Annotated[float, float_range(0.01, 0.3, log=True, minimum=1e-6, maximum=1.0)] = (
        0.1
    )
    min_child_samples: Annotated[int, int_range(2, 100, log=True, maximum=100_000)] = 20
    subsample: Annotated[float, float_range(0.5, 1.0, minimum=0.01, maximum=1.0)] = 1.0
    colsample: Annotated[float, float_range(0.4, 1.0, minimum=0.01, maximum=1.0)] = 1.0
    reg_lambda: Annotated[float, float_range(1e-8, 10.0, log=True, maximum=1e4)] = 0.0
    reg_alpha: Annotated[float, float_range(1e-8, 10.0, log=True, maximum=1e4)] = 0.0
    rounds: Annotated[int, int_range(100, 2000, log=True, maximum=20_000)] = 500
    # Splits on a many-valued column's category code (``FitOptions.category_codes``):
    # LightGBM's own minimum of 100 rows per category group left a column of 150
    # categories of 15 rows each three times worse than its code read as a number.
    min_data_per_group: Annotated[int, int_range(5, 200, log=True, minimum=1, maximum=100_000)] = 20
    cat_smooth: Annotated[float, float_range(1.0, 50.0, log=True, minimum=0.0, maximum=1e4)] = 5.0


LightGbmParams = dict[str, str | int | float | bool]  # LightGBM's own names and values


def _objective(n_outputs: int) -> LightGbmParams:
    if n_outputs == 1:
        return {"objective": "regression", "metric": "l2"}
    if n_outputs == 2:
        return {"objective": "binary", "metric": "binary_logloss"}
    return {"objective": "multiclass", "num_class": n_outputs, "metric": "multi_logloss"}


def booster_params(params: GbdtParams, n_outputs: int, options: FitOptions) -> LightGbmParams:
    """LightGBM's parameters (its own names) for ``params``."""
    return {
        **_objective(n_outputs),
        "num_leaves": params.num_leaves,
        "max_depth": params.max_depth,
        "learning_rate": params.learning_rate,
        "min_child_samples": params.min_child_samples,
        "bagging_fraction": params.subsample,
        "bagging_freq": 1 if params.subsample < 1.0 else 0,
        "feature_fraction": params.colsample,
        "lambda_l2": params.reg_lambda,
        "lambda_l1": params.reg_alpha,
        "min_data_per_group": params.min_data_per_group,
        "cat_smooth": params.cat_smooth,
        "cat_l2": CATEGORY_L2,
        "max_cat_threshold": MAX_CATEGORIES_PER_SPLIT,
        "seed": options.seed,
        "num_threads": options.threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


class GbdtFamily(TableFamily[GbdtParams]):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "LightGBM trees"
    params_model = GbdtParams
    listed: ClassVar[int] = 30
    cost: ClassVar[int] = 20
    # LightGBM's defaults (rounds by early stopping), then a slower-learning, smaller-leaved
    # one. A search starts from the learned portfolio (app/search/portfolio.json, whose
    # candidates include these); these are its fallback where it holds no evidence.
    starting_points: ClassVar[tuple[FamilyParams, ...]] = (
        GbdtParams(reg_lambda=1e-8, reg_alpha=1e-8, rounds=1000),
        GbdtParams(
            num_leaves=15,
            learning_rate=0.05,
            min_child_samples=10,
            subsample=0.8,
            colsample=0.8,
            reg_lambda=1.0,
            reg_alpha=1e-8,
            rounds=2000,
        ),
    )
    graph_weights: ClassVar[bool] = False  # thresholds are node attributes, not tensors
    boosts: ClassVar[bool] = True
    # onnxmltools, per leaf, threshold and category in a split's set (``n_params``): 13-27 us
    # on a 2-core machine (gapminder's boosters, 15,500-744,000 numbers: 0.2-15 s)
    export_s_per_param: ClassVar[float] = 2.5e-5

    def space(self, context: SpaceContext) -> dict[str, Dimension]:
        """Its dimensions; how it splits on categories only where a feature is a code."""
        dimensions = super().space(context)
        if not context.category_codes:
            for name in CATEGORY_PARAMS:
                del dimensions[self.prefix + name]
        return dimensions

    def fit(
        self, params: GbdtParams, data: TableData, n_outputs: int, options: FitOptions
    ) -> TableModel:
        import lightgbm

        max_rounds = options.rounds or params.rounds
        train_set = lightgbm.Dataset(
            data.x_train,
            data.y_train,
            free_raw_data=False,
            # a code's -1 (gap or unknown value) is LightGBM's missing category, as in the
            # graph: BRANCH_EQ nodes that match no category send it right
            categorical_feature=list(options.category_codes) or "auto",
            params={"verbosity": -1},
        )
        callbacks: list[Any] = [_checker(options)]
        valid_sets = []
        if options.rounds is None and data.x_val is not None and len(data.x_val):
            valid_sets = [lightgbm.Dataset(data.x_val, data.y_val, reference=train_set)]
            callbacks.append(lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False))
        booster = lightgbm.train(
            booster_params(params, n_outputs, options),
            train_set,
            num_boost_round=max_rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        rounds = booster.best_iteration or booster.current_iteration()
        return Boosted(
            float32_thresholds(booster, rounds),
            n_inputs=data.x_train.shape[1],
            n_outputs=n_outputs,
        )


def float32_thresholds(booster: lightgbm.Booster, rounds: int) -> lightgbm.Booster:
    """The booster's first ``rounds`` rounds with every split threshold rounded to float32.

    The ONNX TreeEnsemble compares float32 features with float32 thresholds; LightGBM
    compares them with its double thresholds. A feature value between the two (a value
    the threshold rounds up to) goes left in one and right in the other: whole leaves
    apart, 0.05 in probability seen on a real table. Rounded here, both compare the same
    numbers and the booster kept is the one the graph computes (parity to 1e-6)."""
    import lightgbm

    lines = []
    for line in booster.model_to_string(num_iteration=rounds).splitlines():
        if line.startswith(THRESHOLDS):
            values = line.removeprefix(THRESHOLDS).split()
            line = THRESHOLDS + " ".join(repr(float(np.float32(v))) for v in values)
        elif line.startswith("tree_sizes="):
            continue  # byte sizes of the trees, which rounding changes; optional
        lines.append(line)
    return lightgbm.Booster(model_str="\n".join(lines) + "\n")


@dataclass(frozen=True)
class TreeShape:
    """One tree as its graph holds it: its leaves and its split nodes (a split on a set of
    categories is one node per category in the set)."""

    leaves: int
    split_nodes: int


def tree_shapes(model_text: str) -> list[TreeShape]:
    """Each tree's shape, from LightGBM's model text (``num_leaves``, ``num_cat`` and the
    ``cat_threshold`` bitsets of the tree's category splits)."""
    shapes: list[TreeShape] = []
    leaves = categorical = members = 0
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            if shapes or leaves:
                shapes.append(TreeShape(leaves, leaves - 1 - categorical + members))
            leaves = categorical = members = 0
        elif line.startswith(LEAVES):
            leaves = int(line.removeprefix(LEAVES))
        elif line.startswith(CATEGORY_SPLITS):
            categorical = int(line.removeprefix(CATEGORY_SPLITS))
        elif line.startswith(CATEGORY_SETS):
            words = line.removeprefix(CATEGORY_SETS).split()
            members = sum(int(word).bit_count() for word in words)
        elif line.startswith("end of trees"):
            break
    if leaves:
        shapes.append(TreeShape(leaves, leaves - 1 - categorical + members))
    return shapes


def _checker(options: FitOptions) -> Any:
    def callback(env: Any) -> None:
        if env.iteration % CHECK_EVERY_ROUNDS == 0:
            options.check()

    return callback


class Boosted(TableModel):
    """A LightGBM booster (binary, multiclass or L2 regression), holding exactly the
    rounds it keeps, with float32 thresholds (``float32_thresholds``)."""

    family: ClassVar[str] = NAME
    state_suffix: ClassVar[str] = "lgb.txt"

    def __init__(self, booster: lightgbm.Booster, *, n_inputs: int, n_outputs: int) -> None:
        super().__init__(n_inputs, n_outputs, classification=n_outputs > 1)
        self.booster = booster
        self.rounds = booster.current_iteration()
        self._tree_shapes: list[TreeShape] | None = None

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        predicted = np.asarray(self.booster.predict(rows, num_iteration=self.rounds))
        if not self.classification:
            return predicted.reshape(-1, 1)
        if self.n_outputs == 2:
            return class_probabilities(predicted)
        return predicted.reshape(len(rows), self.n_outputs)

    def graph(self) -> onnx.ModelProto:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        deepest = max((shape.split_nodes for shape in self._shapes()), default=0)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, deepest + RECURSION_MARGIN))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = convert_lightgbm(
                    self.booster,
                    initial_types=[(INPUT_NAME, FloatTensorType([None, self.n_inputs]))],
                    zipmap=False,
                    target_opset=CONVERTER_OPSET,
                )
        finally:
            sys.setrecursionlimit(limit)
        outputs = {value.name: value for value in model.graph.output}
        kept = outputs["probabilities"] if self.classification else outputs["variable"]
        _rename(model.graph, OUTPUT_NAME, f"trees_{OUTPUT_NAME}")  # the converter's own name
        _rename(model.graph, kept.name, OUTPUT_NAME)
        del model.graph.output[:]
        model.graph.output.append(kept)
        _drop_unused(model.graph)
        return model

    def _shapes(self) -> list[TreeShape]:
        """Each kept tree's shape, read once from the model text (the booster holds exactly
        the kept rounds; its JSON dump took seconds on a large one)."""
        if self._tree_shapes is None:
            self._tree_shapes = tree_shapes(self.booster.model_to_string(num_iteration=self.rounds))
        return self._tree_shapes

    def _leaves(self) -> list[int]:
        return [shape.leaves for shape in self._shapes()]

    @property
    def n_params(self) -> int:
        """Each leaf's value, each split's threshold, and each category a split's set
        holds (the graph tests each one: a node of its own)."""
        return sum(shape.leaves + shape.split_nodes for shape in self._shapes())

    @property
    def fitted_rounds(self) -> int:
        return int(self.rounds)

    def state_bytes(self) -> bytes:
        return self.booster.model_to_string(num_iteration=self.rounds).encode()

    def describe(self) -> ModelDescription:
        leaves = self._leaves()
        return ModelDescription(
            family=NAME,
            model="LightGBM booster",
            learnt=self.n_params,
            trees=len(leaves),
            leaves=sum(leaves),
            rounds=int(self.rounds),
        )


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    for value in graph.output:
        if value.name == old:
            value.name = new


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs reach a graph output (the converter's label)."""
    needed = {value.name for value in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))


FAMILY = GbdtFamily()

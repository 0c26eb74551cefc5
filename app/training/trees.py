"""The ``gbdt`` family: LightGBM on a table's encoded features, boosting until the watched
rows stop improving, exported with onnxmltools to an ``ai.onnx.ml`` TreeEnsemble whose
probabilities (or values) are the graph's one output."""

from __future__ import annotations

import warnings
from typing import Any

import lightgbm
import numpy as np
import onnx
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType

from app.training.export import INPUT_NAME, OUTPUT_NAME
from app.training.table_models import (
    FitOptions,
    TableData,
    TableModel,
    class_probabilities,
    register_family,
)

CONVERTER_OPSET = 15  # the newest default-domain opset onnxmltools writes
EARLY_STOPPING_ROUNDS = 50
THRESHOLDS = "threshold="
CHECK_EVERY_ROUNDS = 10


def _objective(n_outputs: int, classification: bool) -> dict[str, Any]:
    if not classification:
        return {"objective": "regression", "metric": "l2"}
    if n_outputs == 2:
        return {"objective": "binary", "metric": "binary_logloss"}
    return {"objective": "multiclass", "num_class": n_outputs, "metric": "multi_logloss"}


def booster_params(own: dict[str, Any], n_outputs: int, options: FitOptions) -> dict[str, Any]:
    """LightGBM's parameters from a trial's ``gbdt_*`` values (missing ones: defaults)."""
    subsample = float(own.get("subsample", 1.0))
    return {
        **_objective(n_outputs, n_outputs > 1),
        "num_leaves": int(own.get("num_leaves", 31)),
        "max_depth": int(own.get("max_depth", -1)),
        "learning_rate": float(own.get("learning_rate", 0.1)),
        "min_child_samples": int(own.get("min_child_samples", 20)),
        "bagging_fraction": subsample,
        "bagging_freq": 1 if subsample < 1.0 else 0,
        "feature_fraction": float(own.get("colsample", 1.0)),
        "lambda_l2": float(own.get("reg_lambda", 0.0)),
        "lambda_l1": float(own.get("reg_alpha", 0.0)),
        "seed": options.seed,
        "num_threads": options.threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def _fit(own: dict[str, Any], data: TableData, n_outputs: int, options: FitOptions) -> TableModel:
    params = booster_params(own, n_outputs, options)
    max_rounds = options.rounds or int(own.get("rounds", 500))
    train_set = lightgbm.Dataset(data.x_train, data.y_train, free_raw_data=False)
    callbacks: list[Any] = [_checker(options)]
    valid_sets = []
    if options.rounds is None and data.x_val is not None and len(data.x_val):
        valid_sets = [lightgbm.Dataset(data.x_val, data.y_val, reference=train_set)]
        callbacks.append(lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False))
    booster = lightgbm.train(
        params, train_set, num_boost_round=max_rounds, valid_sets=valid_sets, callbacks=callbacks
    )
    rounds = booster.best_iteration or booster.current_iteration()
    return Boosted(
        float32_thresholds(booster, rounds), n_inputs=data.x_train.shape[1], n_outputs=n_outputs
    )


def float32_thresholds(booster: lightgbm.Booster, rounds: int) -> lightgbm.Booster:
    """The booster's first ``rounds`` rounds with every split threshold rounded to float32.

    The ONNX TreeEnsemble compares float32 features with float32 thresholds; LightGBM
    compares them with its double thresholds. A feature value between the two (a value
    the threshold rounds up to) goes left in one and right in the other: whole leaves
    apart, 0.05 in probability seen on a real table. Rounded here, both compare the same
    numbers and the booster kept is the one the graph computes (parity to 1e-6)."""
    lines = []
    for line in booster.model_to_string(num_iteration=rounds).splitlines():
        if line.startswith(THRESHOLDS):
            values = line.removeprefix(THRESHOLDS).split()
            line = THRESHOLDS + " ".join(repr(float(np.float32(v))) for v in values)
        elif line.startswith("tree_sizes="):
            continue  # byte sizes of the trees, which rounding changes; optional
        lines.append(line)
    return lightgbm.Booster(model_str="\n".join(lines) + "\n")


def _checker(options: FitOptions) -> Any:
    def callback(env: Any) -> None:
        if env.iteration % CHECK_EVERY_ROUNDS == 0:
            options.check()

    return callback


@register_family("gbdt", _fit)
class Boosted(TableModel):
    """A LightGBM booster (binary, multiclass or L2 regression), holding exactly the
    rounds it keeps, with float32 thresholds (``float32_thresholds``)."""

    state_suffix = "lgb.txt"

    def __init__(self, booster: lightgbm.Booster, *, n_inputs: int, n_outputs: int) -> None:
        super().__init__(n_inputs, n_outputs, classification=n_outputs > 1)
        self.booster = booster
        self.rounds = booster.current_iteration()

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        predicted = np.asarray(self.booster.predict(rows, num_iteration=self.rounds))
        if not self.classification:
            return predicted.reshape(-1, 1)
        if self.n_outputs == 2:
            return class_probabilities(predicted)
        return predicted.reshape(len(rows), self.n_outputs)

    def graph(self) -> onnx.ModelProto:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = convert_lightgbm(
                self.booster,
                initial_types=[(INPUT_NAME, FloatTensorType([None, self.n_inputs]))],
                zipmap=False,
                target_opset=CONVERTER_OPSET,
            )
        outputs = {value.name: value for value in model.graph.output}
        kept = outputs["probabilities"] if self.classification else outputs["variable"]
        _rename(model.graph, OUTPUT_NAME, f"trees_{OUTPUT_NAME}")  # the converter's own name
        _rename(model.graph, kept.name, OUTPUT_NAME)
        del model.graph.output[:]
        model.graph.output.append(kept)
        _drop_unused(model.graph)
        return model

    @property
    def n_params(self) -> int:
        trees = self.booster.dump_model(num_iteration=self.rounds)["tree_info"]
        leaves = sum(int(tree["num_leaves"]) for tree in trees)
        return 2 * leaves - len(trees)  # each split a threshold, each leaf a value

    @property
    def fitted_rounds(self) -> int:
        return int(self.rounds)

    def state_bytes(self) -> bytes:
        return self.booster.model_to_string(num_iteration=self.rounds).encode()

    def describe(self) -> dict[str, Any]:
        trees = self.booster.dump_model(num_iteration=self.rounds)["tree_info"]
        return {
            "family": "gbdt",
            "rounds": int(self.rounds),
            "trees": len(trees),
            "leaves": sum(int(tree["num_leaves"]) for tree in trees),
        }


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

"""One small graph per ai.onnx.ml operator of ``app.onnx_graphs.classify.ALLOWED_OPS``: the
trees and linear models skl2onnx and onnxmltools write, and their helpers (``CASES``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from tests.onnx_graphs.graph import INT64, ML, Body, Case, Graph

CASES: dict[tuple[str, str], Case] = {}


def case(op: str, ml: int = 3, opset: int = 18) -> Callable[[Body], Body]:
    """Register a body as the graph of ai.onnx.ml's ``op`` in CASES."""

    def register(body: Body) -> Body:
        CASES[(ML, op)] = Case(body, opset, ml)
        return body

    return register


def _ml(op: str, **attrs: Any) -> Case:
    return Case(lambda g: (g.op(op, "x", domain=ML, **attrs), 4), ml=3)


CASES |= {
    (ML, "Normalizer"): _ml("Normalizer", norm="L2"),
    (ML, "Scaler"): _ml("Scaler", offset=[0.5] * 4, scale=[2.0] * 4),
    (ML, "Binarizer"): _ml("Binarizer", threshold=0.5),
    (ML, "Imputer"): _ml("Imputer", imputed_value_floats=[0.0] * 4, replaced_value_float=-1.0),
    (ML, "LabelEncoder"): _ml(
        "LabelEncoder", keys_floats=[0.0, 1.0], values_floats=[5.0, 6.0], default_float=0.0
    ),
}


_NODES: dict[str, Any] = {  # one tree: x[:, 0] <= 0.5, two leaves
    "nodes_treeids": [0, 0, 0],
    "nodes_nodeids": [0, 1, 2],
    "nodes_featureids": [0, 0, 0],
    "nodes_modes": ["BRANCH_LEQ", "LEAF", "LEAF"],
    "nodes_values": [0.5, 0.0, 0.0],
    "nodes_truenodeids": [1, 0, 0],
    "nodes_falsenodeids": [2, 0, 0],
}
_LEAVES: dict[str, Any] = {"treeids": [0, 0, 0, 0], "nodeids": [1, 1, 2, 2], "ids": [0, 1, 0, 1]}
_WEIGHTS = [0.8, 0.2, 0.3, 0.7]


@case("TreeEnsembleClassifier", ml=1)
def _tree_classifier(g: Graph) -> tuple[str, int]:
    leaves = {f"class_{key}": value for key, value in _LEAVES.items()}
    attrs = {**_NODES, **leaves, "class_weights": _WEIGHTS, "classlabels_int64s": [0, 1]}
    return g.outputs("TreeEnsembleClassifier", "x", outs=2, domain=ML, **attrs)[1], 2


@case("TreeEnsembleRegressor", ml=1)
def _tree_regressor(g: Graph) -> tuple[str, int]:
    leaves = {f"target_{key}": value for key, value in _LEAVES.items()}
    attrs = {**_NODES, **leaves, "target_weights": _WEIGHTS, "n_targets": 2}
    return g.op("TreeEnsembleRegressor", "x", domain=ML, **attrs), 2


@case("TreeEnsemble", ml=5, opset=21)
def _tree_ensemble(g: Graph) -> tuple[str, int]:
    def tensor(values: list[Any], dtype: Any) -> TensorProto:
        return numpy_helper.from_array(np.array(values, dtype))

    splits: dict[str, Any] = {
        "tree_roots": [0],
        "nodes_featureids": [0],
        "nodes_modes": tensor([0], np.uint8),  # BRANCH_LEQ
        "nodes_splits": tensor([0.5], np.float32),
        "nodes_truenodeids": [0],
        "nodes_trueleafs": [1],
        "nodes_falsenodeids": [1],
        "nodes_falseleafs": [1],
    }
    leaves: dict[str, Any] = {
        "leaf_targetids": [0, 1],
        "leaf_weights": tensor([0.1, 0.2], np.float32),
    }
    return g.op("TreeEnsemble", "x", domain=ML, n_targets=2, **splits, **leaves), 2


@case("LinearClassifier", ml=1)
def _linear_classifier(g: Graph) -> tuple[str, int]:
    weights: dict[str, Any] = {"coefficients": [0.5] * 4 + [-0.5] * 4, "intercepts": [0.0, 0.1]}
    scores = g.outputs(
        "LinearClassifier", "x", outs=2, domain=ML, classlabels_ints=[0, 1], **weights
    )
    return scores[1], 2


@case("LinearRegressor", ml=1)
def _linear_regressor(g: Graph) -> tuple[str, int]:
    weights: dict[str, Any] = {"coefficients": [0.5] * 8, "intercepts": [0.0, 0.1]}
    return g.op("LinearRegressor", "x", domain=ML, targets=2, **weights), 2


@case("OneHotEncoder")
def _one_hot(g: Graph) -> tuple[str, int]:
    hot = g.op("OneHotEncoder", g.op("Cast", "x", to=INT64), domain=ML, cats_int64s=[0, 1])
    return g.reshape(hot, -1, 8), 8  # [batch, 4, 2] -> [batch, 8]


@case("ArrayFeatureExtractor")
def _feature_extractor(g: Graph) -> tuple[str, int]:
    return g.op("ArrayFeatureExtractor", "x", g.ints(0, 2), domain=ML), 2


@case("CategoryMapper")
def _category_mapper(g: Graph) -> tuple[str, int]:
    categories: dict[str, Any] = {"cats_int64s": [0, 1], "cats_strings": ["a", "b"]}
    names = g.op(
        "CategoryMapper", g.op("Cast", "x", to=INT64), domain=ML, default_string="_", **categories
    )
    return g.floats(g.op("CategoryMapper", names, domain=ML, default_int64=-1, **categories)), 4


@case("FeatureVectorizer")
def _vectorizer(g: Graph) -> tuple[str, int]:
    return g.op("FeatureVectorizer", "x", "x", domain=ML, inputdimensions=[4, 4]), 8

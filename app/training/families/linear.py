"""The ``linear`` family: logistic regression (classification) or ridge regression on a
table's encoded features; cheap, deterministic, and the reference every search reports.
Exported as one ``Gemm`` (and a ``Softmax`` for probabilities). scikit-learn is imported
where a fit needs it."""

from __future__ import annotations

import io
import warnings
from typing import Annotated, ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.training.families.base import FamilyParams, TableFamily, float_range
from app.training.onnx_io import INPUT_NAME, OPSET, OUTPUT_NAME
from app.training.table_models import FitOptions, ModelDescription, TableData, TableModel

NAME = "linear"
MAX_ITERATIONS = 500


class LinearParams(FamilyParams):
    """``c``: the inverse regularisation strength (ridge's alpha is 1 / c)."""

    c: Annotated[float, float_range(1e-3, 100.0, log=True, minimum=1e-9, maximum=1e9)] = 1.0


class LinearFamily(TableFamily[LinearParams]):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "logistic or ridge regression"
    params_model = LinearParams
    listed: ClassVar[int] = 40
    cost: ClassVar[int] = 10  # a second: tried first
    # the fallback of the learned portfolio (app/search/portfolio.json), a candidate in it
    starting_points: ClassVar[tuple[FamilyParams, ...]] = (LinearParams(),)

    def fit(
        self, params: LinearParams, data: TableData, n_outputs: int, options: FitOptions
    ) -> TableModel:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, Ridge

        options.check()
        x = data.x_train.astype(np.float64)
        x[:, list(options.category_codes)] = 0.0  # a category's code is a name, not an amount
        # Fitted on standardised features, the weights then folded back onto the raw ones
        # (one Gemm as before): unscaled, lbfgs stopped far from the optimum where columns
        # ran in the thousands (hpc_data: 55% accuracy, 74% standardised).
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0.0] = 1.0
        standard = (x - mean) / scale
        if n_outputs == 1:
            ridge = Ridge(alpha=1.0 / params.c).fit(standard, data.y_train.astype(np.float64))
            weights = np.asarray(ridge.coef_, dtype=np.float64).reshape(1, -1)
            bias = np.atleast_1d(np.asarray(ridge.intercept_, dtype=np.float64))
            return _raw_scale(weights, bias, mean, scale, n_outputs=1)
        labels = data.y_train.astype(np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            logistic = LogisticRegression(
                C=params.c, max_iter=MAX_ITERATIONS, random_state=options.seed
            ).fit(standard, labels)
        weights = np.zeros((n_outputs, x.shape[1]))
        bias = np.zeros(n_outputs)
        seen = logistic.classes_.astype(np.int64)
        if len(seen) == 2 and logistic.coef_.shape[0] == 1:  # one logit: class 1 against 0
            weights[seen[1]], bias[seen[1]] = logistic.coef_[0], logistic.intercept_[0]
        else:
            weights[seen], bias[seen] = logistic.coef_, logistic.intercept_
        absent = np.setdiff1d(np.arange(n_outputs), seen)
        model = _raw_scale(weights, bias, mean, scale, n_outputs=n_outputs)
        model.bias[absent] = -1e4  # a class no training row had: never predicted
        return model


def _raw_scale(
    weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray, *, n_outputs: int
) -> Linear:
    """Weights fitted on standardised features, as weights on the raw ones."""
    raw = weights / scale
    return Linear(raw, bias - raw @ mean, n_outputs=n_outputs)


class Linear(TableModel):
    """Weights [outputs, features] and a bias: logits (softmaxed) or values."""

    family: ClassVar[str] = NAME
    state_suffix: ClassVar[str] = "npz"

    def __init__(self, weights: np.ndarray, bias: np.ndarray, *, n_outputs: int) -> None:
        super().__init__(weights.shape[1], n_outputs, classification=n_outputs > 1)
        self.weights, self.bias = weights.astype(np.float32), bias.astype(np.float32)

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        scores = rows.astype(np.float32) @ self.weights.T + self.bias
        if not self.classification:
            return scores
        scores = scores - scores.max(axis=1, keepdims=True)
        exponent = np.exp(scores)
        return exponent / exponent.sum(axis=1, keepdims=True)

    def graph(self) -> onnx.ModelProto:
        scores = "scores" if self.classification else OUTPUT_NAME
        nodes = [helper.make_node("Gemm", [INPUT_NAME, "weights", "bias"], [scores], transB=1)]
        if self.classification:
            nodes.append(helper.make_node("Softmax", [scores], [OUTPUT_NAME], axis=1))
        graph = helper.make_graph(
            nodes,
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
            initializer=[
                numpy_helper.from_array(self.weights, "weights"),
                numpy_helper.from_array(self.bias, "bias"),
            ],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="modelkiln"
        )
        model.ir_version = 9
        return model

    @property
    def n_params(self) -> int:
        return int(self.weights.size + self.bias.size)

    @property
    def fitted_rounds(self) -> int:
        return 1

    def state_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, weights=self.weights, bias=self.bias)
        return buffer.getvalue()

    def describe(self) -> ModelDescription:
        kind = "logistic regression" if self.classification else "ridge regression"
        return ModelDescription(family=NAME, model=kind, learnt=self.n_params)


FAMILY = LinearFamily()

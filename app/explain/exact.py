"""Exact attributions in raw-score space, folded back from the table's encoded features to
the columns the user named (a one-hot block, a date's parts and a gap indicator are one
column's): TreeSHAP through LightGBM's own ``pred_contrib`` on the booster kept beside the
graph, and a linear model's weights times each feature's distance from the background's
mean (exact Shapley values of a model additive over its features).

Raw scores: a regression's value; for two classes the log-odds of each class against the
other (class 0's is minus class 1's); for more, each class's input to the softmax."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from app.contracts.encoding import TableEncoding
from app.explain.data import LinearWeights
from app.preprocessing.encode import encode

if TYPE_CHECKING:
    import lightgbm

Exact = tuple[np.ndarray, np.ndarray]  # attributions [n, d, K] and base values [n, K]


def fold(encoding: TableEncoding, by_feature: np.ndarray) -> np.ndarray:
    """[n, features, K] -> [n, columns, K]: each column's features summed."""
    return np.stack(
        [by_feature[:, start:end].sum(axis=1) for start, end in encoding.spans()], axis=1
    )


def raw_columns(encoding: TableEncoding, columns: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder's raw input from one flat array per encoded column (in its order)."""
    return {column.name: values for column, values in zip(encoding.columns, columns, strict=True)}


def _log_odds(attributions: np.ndarray, base: np.ndarray) -> Exact:
    """Class 1 against class 0 from a binary model's one raw score, and class 0's beside."""
    return (
        np.concatenate([-attributions, attributions], axis=2),
        np.concatenate([-base, base], axis=1),
    )


class TreeShap:
    """TreeSHAP of a LightGBM booster on the table's encoded features."""

    def __init__(self, encoding: TableEncoding, booster_text: str, classes: int) -> None:
        self.encoding = encoding
        self.booster_text = booster_text
        self.classes = classes  # 0: regression

    @cached_property
    def booster(self) -> lightgbm.Booster:
        import lightgbm

        return lightgbm.Booster(model_str=self.booster_text)

    def explain(self, columns: list[np.ndarray]) -> Exact:
        features = encode(self.encoding, raw_columns(self.encoding, columns))
        # One thread: LightGBM spreads a call over every core with OpenMP by default, which
        # costs 10-15 ms a row on a busy machine against about 1 ms alone (bench/explain.py).
        contributions = np.asarray(self.booster.predict(features, pred_contrib=True, num_threads=1))
        n, width = len(features), features.shape[1] + 1
        scores = max(1, self.classes if self.classes > 2 else 1)
        blocks = contributions.reshape(n, scores, width).astype(np.float64)
        attributions = fold(self.encoding, np.transpose(blocks[:, :, :-1], (0, 2, 1)))
        base = blocks[:, :, -1]
        if self.classes == 2:
            return _log_odds(attributions, base)
        return attributions, base


class LinearExact:
    """A linear model's exact attributions against the background's mean features."""

    def __init__(
        self, encoding: TableEncoding, linear: LinearWeights, background: list[np.ndarray]
    ) -> None:
        self.encoding = encoding
        self.weights = np.asarray(linear.weights, dtype=np.float64)  # [K, F]
        self.bias = np.asarray(linear.bias, dtype=np.float64)
        self.mean = (
            encode(encoding, raw_columns(encoding, background)).astype(np.float64).mean(axis=0)
        )
        self.base = self.mean @ self.weights.T + self.bias  # [K]

    def explain(self, columns: list[np.ndarray]) -> Exact:
        features = encode(self.encoding, raw_columns(self.encoding, columns)).astype(np.float64)
        by_feature = (features - self.mean)[:, :, None] * self.weights.T[None, :, :]  # [n, F, K]
        attributions = fold(self.encoding, by_feature)
        base = np.broadcast_to(self.base, (len(features), len(self.base))).copy()
        if len(self.bias) == 2:  # log-odds of class 1 against class 0, and minus that
            return _log_odds(
                attributions[:, :, 1:] - attributions[:, :, :1], base[:, 1:] - base[:, :1]
            )
        return attributions, base

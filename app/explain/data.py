"""What a version keeps for its explanations: the stored file (a background sample of raw
rows, and the exact model a method needs: a LightGBM booster's text, a linear model's
weights) and the record in the version's ``metrics`` that points at it (with the global
importance computed when it was registered)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

Method = Literal["tree_shap", "linear_exact", "sampled_shapley"]
# What the attributions add up to: a LightGBM booster's or a linear model's raw score
# (log-odds of each class against the other for two classes, the softmax's input for more,
# the value for regression), the served graph's probability, an uploaded graph's first
# output as it is ('score'), or a regression's value.
Output = Literal["raw_score", "probability", "score", "value"]
METRICS_KEY = "explain"  # the record's key in a version's metrics
Cell = float | str | None


class LinearWeights(BaseModel):
    """A linear model on the table's encoded features: logits = features @ weights.T + bias."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: list[list[float]]  # [outputs, features]
    bias: list[float]


class ExplainData(BaseModel):
    """The stored file: background rows (per input column as the graph takes them: numbers
    with None for a gap, text with '' for a gap; or one list per feature of a one-tensor
    model) and the exact model of the method, if any."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method
    background: dict[str, list[Cell]]
    booster: str | None = None  # LightGBM's model text (tree_shap)
    linear: LinearWeights | None = None  # (linear_exact)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> ExplainData:
        return cls.model_validate(orjson.loads(data))

    @property
    def background_rows(self) -> int:
        return len(next(iter(self.background.values()), []))


class Importance(BaseModel):
    """Global importance: the mean absolute attribution of each input column (over the
    rows and, for a classifier, the classes), largest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method
    output: Output
    rows: int = Field(description="The held-out rows it was averaged over.")
    columns: dict[str, float] = Field(description="Column -> mean |attribution|, largest first.")


class ExplainRecord(BaseModel):
    """A version's ``metrics['explain']``: where its explanation file is, and what it says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    sha256: str
    method: Method
    background_rows: int
    importance: Importance | None = None
    inherited_from: int | None = Field(
        default=None, description="The version id whose background a variant reuses."
    )

    @classmethod
    def of(cls, metrics: dict[str, Any] | None) -> ExplainRecord | None:
        """The record in a version's metrics, or None (none, or not one this code reads)."""
        found = (metrics or {}).get(METRICS_KEY)
        if not isinstance(found, dict):
            return None
        try:
            return cls.model_validate(found)
        except ValueError:
            return None


def stored_background(names: tuple[str, ...], columns: list[np.ndarray]) -> dict[str, list[Cell]]:
    """Background rows as stored, from one flat array per player: numbers (None for a gap)
    or text ('' for a gap)."""
    stored: dict[str, list[Cell]] = {}
    for name, values in zip(names, columns, strict=True):
        if values.dtype == object:
            stored[name] = ["" if v is None else str(v) for v in values.tolist()]
        else:
            numbers = values.astype(np.float64)
            stored[name] = [None if math.isnan(v) else v for v in numbers.tolist()]
    return stored


def inherited(
    metrics: dict[str, Any], parent_metrics: dict[str, Any] | None, parent_id: int
) -> dict[str, Any]:
    """A variant's metrics with its parent's background (a compressed graph takes the same
    inputs): explained by sampled Shapley values on its own graph, with the importance its
    job computed against that background (``app.compression.explanations``), if it did.
    Unchanged when the parent has none."""
    parent = ExplainRecord.of(parent_metrics)
    if parent is None:
        return metrics
    own = ExplainRecord.of(metrics)  # computed on the parent's file as it was then
    record = ExplainRecord(
        key=parent.key,
        sha256=parent.sha256,
        method="sampled_shapley",
        background_rows=parent.background_rows,
        importance=own.importance if own is not None and own.sha256 == parent.sha256 else None,
        inherited_from=parent.inherited_from or parent_id,
    )
    return {**metrics, METRICS_KEY: record.model_dump(exclude_none=True)}

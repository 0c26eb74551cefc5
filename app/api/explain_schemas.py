"""The bodies of the explanation routes, as the OpenAPI document declares them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.explain.data import Importance, Method, Output


class OutputExplanation(BaseModel):
    """One output of one row: the class it is for (a classifier's), its value, the base
    value and one attribution per input column; base value + attributions = value."""

    model_config = ConfigDict(populate_by_name=True)

    class_: Any = Field(
        default=None, alias="class", description="The class (None for a regression)."
    )
    value: float = Field(description="The model's output the attributions add up to.")
    base_value: float = Field(
        description="The expected output: over the background sample (sampled Shapley, "
        "linear), or over the booster's training rows (TreeSHAP)."
    )
    attributions: dict[str, float] = Field(
        description="Input column (as the user named it; a one-tensor model's by position) "
        "-> its share of value - base_value."
    )


class RowExplanation(BaseModel):
    """One explained row."""

    prediction: Any = Field(description="The predicted label, or value (as predict answers).")
    outputs: list[OutputExplanation] = Field(description="Per class for a classifier.")


class ExplainResponse(BaseModel):
    """Explanations of the rows sent, in their order."""

    model: str
    version: int
    method: Method = Field(
        description="tree_shap (LightGBM's pred_contrib: exact), linear_exact, or "
        "sampled_shapley (permutations, each from one background row)."
    )
    output: Output = Field(
        description="What the values are: raw_score (log-odds of each class against the "
        "other for two classes, the softmax's input for more; a regression's value), "
        "probability, score (an upload's first output as it is) or value (regression)."
    )
    samples: int | None = Field(
        default=None, description="Permutations per row (sampled_shapley), else None."
    )
    background_rows: int = Field(description="Rows in the version's background sample.")
    explanations: list[RowExplanation]


class BackgroundRead(BaseModel):
    """A version's explanation setup after its background was set."""

    model: str
    version: int
    method: Method
    background_rows: int
    importance: Importance | None = Field(
        default=None, description="Computed on the rows sent (at most 64 of them)."
    )

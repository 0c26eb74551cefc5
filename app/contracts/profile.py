"""The typed profile of a dataset: what each column holds, the target's distribution, and
the rows left out and why. Stored as JSON on the dataset (``app.core.db.PydanticJSON``); computed
by ``app.datasets.profile``; shown by ``GET /v1/datasets/{id}``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TOP_CLASSES = 20  # classes listed in the target's distribution (the rest are counted)
TOP_VALUES = 10  # most frequent values listed per categorical column


class ValueCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: str
    rows: int


class ColumnProfile(BaseModel):
    """One feature column as the model will see it."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["numeric", "categorical", "datetime", "ignored"] = Field(
        description="The type used for training; 'ignored' columns are not features."
    )
    reason: str | None = Field(
        default=None,
        description="Why an ignored column is left out; for a numeric column with words "
        "among its numbers, how they were read (as gaps) and why.",
    )
    missing: int = Field(
        description="Empty cells (or missing tokens) in the rows kept, and the cells of "
        "words a numeric column read as gaps."
    )
    words: int | None = Field(
        default=None,
        description="Numeric: cells of words read as gaps (at most 5% of the filled "
        "cells; the most frequent are in 'top').",
    )
    distinct: int | None = Field(default=None, description="Distinct values in the rows kept.")
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    top: list[ValueCount] | None = Field(
        default=None,
        description=f"Most frequent values (categorical; at most {TOP_VALUES}), or a "
        "numeric column's most frequent words.",
    )
    earliest: str | None = None
    latest: str | None = None
    edges: list[float] | None = Field(
        default=None,
        description="Numeric: the training values' deciles (repeats merged), the inner edges "
        "of the bins drift is measured in.",
    )
    shares: list[float] | None = Field(
        default=None,
        description="Numeric: the share of the training values (gaps left out) in each bin "
        "(below the first edge, between edges, above the last).",
    )

    def bin_of(self, values: Any) -> Any:
        """The bin of each value (numpy array in, array of bin indices out)."""
        import numpy as np

        return np.searchsorted(np.asarray(self.edges or []), values, side="right")


class ClassCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: Any
    rows: int


class TargetProfile(BaseModel):
    """The column to predict: class counts, or the spread of a continuous value."""

    model_config = ConfigDict(frozen=True)

    name: str
    task: str
    classes: list[ClassCount] | None = Field(
        default=None, description=f"Rows per class, most frequent first (at most {TOP_CLASSES})."
    )
    other_classes: int = Field(default=0, description="Classes not listed.")
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    std: float | None = None


class DroppedRows(BaseModel):
    """Rows of the file that are not in the dataset, by reason."""

    model_config = ConfigDict(frozen=True)

    reason: str
    rows: int
    first_line: int = Field(
        description="The first such line of the file (1-based, header included)."
    )


class DatasetProfile(BaseModel):
    """What an upload turned into."""

    model_config = ConfigDict(frozen=True)

    rows: int
    duplicate_rows: int = Field(
        default=0,
        description="Rows whose features repeat an earlier row's (as the model reads them). "
        "They are kept, and every split and cross-validation fold keeps identical rows "
        "together, so no row is scored by a model that trained on its twin.",
    )
    columns: list[ColumnProfile]
    target: TargetProfile
    dropped: list[DroppedRows] = Field(default_factory=list)

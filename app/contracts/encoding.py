"""The typed preprocessing of a table: how each source column becomes network features.

Fitted once at upload (``app.preprocessing.fit``), stored on the dataset and on every version
trained from it, applied in numpy for training (``app.preprocessing.encode``) and built as the
front of the served ONNX graph (``app.preprocessing.graph``): one spec, two implementations
that the export parity check holds together."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# An ISO 8601 date with an optional time and zone, as the graph and numpy both read it.
DATETIME_PATTERN = (
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)
DATE_PARTS = ("year", "month", "day", "weekday")  # weekday: 0 = Sunday
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: numbers must fit
_DATETIME = re.compile(DATETIME_PATTERN, re.ASCII)  # ASCII digits, as RE2 in the graph
# A number as a CSV cell writes it (matched case-insensitively, the whole trimmed cell).
NUMBER_PATTERN = r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)"
_NUMBER = re.compile(NUMBER_PATTERN, re.ASCII | re.IGNORECASE)


def is_datetime(text: str) -> bool:
    """Whether ``text`` is a date (and time) the preprocessing reads."""
    return _DATETIME.fullmatch(text) is not None


def number_or_gap(text: str) -> float:
    """A cell of a numeric column whose upload held words among its numbers, read as the
    upload read it: a number, or NaN (a gap) for anything else."""
    cell = text.strip()
    return float(cell) if _NUMBER.fullmatch(cell) else math.nan


class _Column(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    indicator: bool = Field(
        default=False, description="A 0/1 'was missing' feature (training saw gaps in this column)."
    )


class NumericColumn(_Column):
    """A number: gaps are filled with the training median."""

    kind: Literal["numeric"] = "numeric"
    fill: float
    words_as_gaps: bool = Field(
        default=False,
        description="The upload held a few words among the numbers (at most 5% of the "
        "filled cells): they were read as gaps, and text sent for this column is read as "
        "a gap too (a number written as text is still that number).",
    )

    @property
    def width(self) -> int:
        return 1 + self.indicator

    def feature_names(self) -> list[str]:
        return [self.name] + ([f"{self.name}:missing"] if self.indicator else [])


class CategoricalColumn(_Column):
    """Text or booleans: one-hot over the frequent categories, the rest (and categories
    never seen) share the ``other`` slot; a gap has a slot of its own when training saw
    gaps. Columns with many values also get each value's log frequency as a number and,
    where ``code`` is set, each value's code: its place among the known values, sorted
    (-1 for a gap or a value not known), which a tree family splits on as a category."""

    kind: Literal["categorical"] = "categorical"
    categories: list[str] = Field(description="One-hot slots, most frequent first.")
    other: bool = Field(
        description="Whether an 'other' slot exists (rare categories were "
        "merged into it). Without one, unseen values take the first slot."
    )
    frequencies: dict[str, float] | None = Field(
        default=None, description="log(1 + rows) per known value, for many-valued columns."
    )
    code: bool = Field(
        default=False,
        description="A many-valued column's category code feature: each known value's "
        "place in the sorted known values (the keys of `frequencies`), -1 for gaps and "
        "values not known. Only a family that splits on categories (gbdt) reads it.",
    )

    @property
    def slots(self) -> int:
        return len(self.categories) + self.other + self.indicator

    @property
    def other_slot(self) -> int:
        """Where unseen values go: the 'other' slot, else the most frequent category."""
        return len(self.categories) if self.other else 0

    @property
    def missing_slot(self) -> int:
        """Where a gap goes: its own slot when training saw gaps, else with unseen values."""
        return len(self.categories) + self.other if self.indicator else self.other_slot

    @property
    def width(self) -> int:
        return self.slots + (self.frequencies is not None) + self.coded

    @property
    def coded(self) -> bool:
        """Whether the column has a code feature (it needs the known values)."""
        return self.code and self.frequencies is not None

    def codes(self) -> dict[str, float]:
        """Each known value's code, as the numpy encoding and the graph both write it."""
        return {value: float(code) for code, value in enumerate(sorted(self.frequencies or {}))}

    def feature_names(self) -> list[str]:
        names = [f"{self.name}={value}" for value in self.categories]
        names += [f"{self.name}:other"] if self.other else []
        names += [f"{self.name}:missing"] if self.indicator else []
        names += [f"{self.name}:frequency"] if self.frequencies is not None else []
        return names + ([f"{self.name}:code"] if self.coded else [])


class DatetimeColumn(_Column):
    """An ISO date (and time): year, month, day, weekday (and hour); gaps and values that
    are not dates take the training median date."""

    kind: Literal["datetime"] = "datetime"
    fill: str = Field(description="The date a gap is read as (training median).")
    hour: bool = Field(description="Whether training saw times of day.")

    @property
    def width(self) -> int:
        return len(DATE_PARTS) + self.hour + self.indicator

    def feature_names(self) -> list[str]:
        parts = [*DATE_PARTS, "hour"] if self.hour else list(DATE_PARTS)
        names = [f"{self.name}:{part}" for part in parts]
        return names + ([f"{self.name}:missing"] if self.indicator else [])


ColumnEncoding = Annotated[
    NumericColumn | CategoricalColumn | DatetimeColumn, Field(discriminator="kind")
]


class TableEncoding(BaseModel):
    """Every feature column in source order; the network reads their features concatenated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: list[ColumnEncoding]
    ignored: list[str] = Field(
        default_factory=list,
        description="Columns of the upload that "
        "are not features (identifiers, free text, row numbers): "
        "accepted and left unread at prediction.",
    )

    @property
    def width(self) -> int:
        return sum(column.width for column in self.columns)

    def feature_names(self) -> list[str]:
        return [name for column in self.columns for name in column.feature_names()]

    def spans(self) -> list[tuple[int, int]]:
        """Each source column's [start, end) in the feature vector."""
        spans, start = [], 0
        for column in self.columns:
            spans.append((start, start + column.width))
            start += column.width
        return spans

    def category_codes(self) -> tuple[int, ...]:
        """The features that hold category codes (``CategoricalColumn.code``)."""
        return tuple(
            end - 1
            for column, (_start, end) in zip(self.columns, self.spans(), strict=True)
            if isinstance(column, CategoricalColumn) and column.coded
        )

    def sources_of(self, features: list[int] | None) -> set[str]:
        """The source columns that feed any of ``features`` (None: all of them)."""
        if features is None:
            return {column.name for column in self.columns}
        wanted = set(features)
        return {
            column.name
            for column, (start, end) in zip(self.columns, self.spans(), strict=True)
            if wanted.intersection(range(start, end))
        }

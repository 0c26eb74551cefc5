"""Fitting a table's preprocessing from its typed columns. Nothing here reads the target:
fill values, category slots and frequencies come from the feature columns of the rows kept."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.contracts.encoding import (
    CategoricalColumn,
    ColumnEncoding,
    DatetimeColumn,
    NumericColumn,
    TableEncoding,
)
from app.core.errors import BrokenInvariant
from app.preprocessing.columns import SourceColumn

MAX_ONE_HOT = 32  # one-hot slots per column (the most frequent values)
MIN_CATEGORY_ROWS = 5  # rarer values share the 'other' slot
MAX_FREQUENCY_KEYS = 5_000  # values whose frequency a many-valued column keeps


def value_counts(text: pa.Array) -> list[tuple[str, int]]:
    """Filled values with their row counts, most frequent first (ties by value)."""
    counted = pc.value_counts(pc.filter(text, pc.not_equal(text, "")))
    pairs = zip(
        counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
    )
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))


def _categorical(column: SourceColumn) -> CategoricalColumn:
    if column.text is None:
        raise BrokenInvariant("column.text is None")
    counts = value_counts(column.text)
    frequent = [value for value, rows in counts[:MAX_ONE_HOT] if rows >= MIN_CATEGORY_ROWS]
    categories = frequent or [counts[0][0]]
    frequencies = None
    if len(counts) > MAX_ONE_HOT:
        frequencies = {
            value: float(np.float32(math.log1p(rows)))
            for value, rows in counts[:MAX_FREQUENCY_KEYS]
        }
    return CategoricalColumn(
        name=column.name,
        categories=categories,
        other=len(counts) > len(categories),
        indicator=column.missing > 0,
        frequencies=frequencies,
        code=frequencies is not None,
    )


def _datetime(column: SourceColumn) -> DatetimeColumn:
    if column.text is None:
        raise BrokenInvariant("column.text is None")
    counts = sorted(value_counts(column.text))  # by date (ISO text sorts as time does)
    half, seen, median = sum(rows for _, rows in counts) / 2, 0, counts[0][0]
    for value, rows in counts:
        seen += rows
        if seen >= half:
            median = value
            break
    longest = max(len(value) for value, _ in counts)
    return DatetimeColumn(
        name=column.name, fill=median[:10], hour=longest > 10, indicator=column.missing > 0
    )


def _numeric(column: SourceColumn) -> NumericColumn:
    if column.numbers is None:
        raise BrokenInvariant("column.numbers is None")
    filled = column.numbers[~np.isnan(column.numbers)]
    return NumericColumn(
        name=column.name,
        fill=float(np.float32(np.median(filled))),
        indicator=column.missing > 0,
        words_as_gaps=column.words is not None,
    )


def fit_encoding(columns: list[SourceColumn]) -> TableEncoding:
    """The preprocessing of every column that is not left out, in source order."""
    fitted: list[ColumnEncoding] = []
    for column in columns:
        if column.type == "numeric":
            fitted.append(_numeric(column))
        elif column.type == "categorical":
            fitted.append(_categorical(column))
        elif column.type == "datetime":
            fitted.append(_datetime(column))
    ignored = [column.name for column in columns if column.type == "ignore"]
    return TableEncoding(columns=fitted, ignored=ignored)

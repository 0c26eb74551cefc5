"""Applying a ``TableEncoding`` in numpy: raw columns in, the network's float32 features out.
This is what training sees; ``app.preprocessing.graph`` builds the same steps as ONNX, and
the export parity check compares the two on raw rows (gaps and unseen values included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.contracts.encoding import (
    CategoricalColumn,
    DatetimeColumn,
    NumericColumn,
    TableEncoding,
    is_datetime,
)

# A raw column's values: float32 numbers (NaN: gap) or text ('' : gap), as numpy or Arrow.
RawValues: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray
Raw: TypeAlias = Mapping[str, RawValues]  # column name -> its values
# Sakamoto's offsets: the weekday of the first of each month, relative to the year's.
MONTH_OFFSETS = (0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4)
UNKNOWN_CODE = -1.0  # a category code for a gap or an unknown value (a tree sends it right)


def as_text(values: Any) -> pa.Array:
    """Text values as an Arrow string array (from Arrow, numpy or a list)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(np.asarray(values, dtype=object).reshape(-1), type=pa.string())


def _coded(text: pa.Array, code: dict[str, float], default: float) -> np.ndarray:
    """``code[value]`` per row (``default`` for values not in it), via the distinct values."""
    encoded = pc.dictionary_encode(text)
    table = np.array(
        [code.get(value, default) for value in encoded.dictionary.to_pylist()] + [default],
        dtype=np.float64,
    )
    indices = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()
    result: np.ndarray = table[indices]
    return result


def slot_codes(column: CategoricalColumn) -> dict[str, int]:
    """The slot of each known value (the graph's LabelEncoder holds the same map)."""
    codes = {value: slot for slot, value in enumerate(column.categories)}
    if column.indicator:
        codes[""] = column.missing_slot
    return codes


def _categorical(column: CategoricalColumn, text: pa.Array, out: np.ndarray) -> None:
    slots = _coded(text, dict(slot_codes(column)), column.other_slot).astype(np.intp)
    out[:, : column.slots] = 0.0
    out[np.arange(len(slots)), slots] = 1.0
    if column.frequencies is not None:
        out[:, column.slots] = _coded(text, column.frequencies, 0.0)
    if column.coded:
        out[:, column.slots + 1] = _coded(text, column.codes(), UNKNOWN_CODE)


def date_parts(value: str, column: DatetimeColumn) -> tuple[list[float], bool]:
    """Year, month, day, weekday (and hour) of one value, and whether it was missing."""
    missing = not is_datetime(value)
    text = column.fill if missing else value
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    shifted = year - (month < 3)
    offset = MONTH_OFFSETS[min(max(month, 1), 12) - 1]
    weekday = (shifted + shifted // 4 - shifted // 100 + shifted // 400 + offset + day) % 7
    parts = [float(year), float(month), float(day), float(weekday)]
    if column.hour:
        parts.append(float(text[11:13]) if len(text) > 12 and text[10] in "T " else 0.0)
    return parts, missing


def _datetime(column: DatetimeColumn, text: pa.Array, out: np.ndarray) -> None:
    encoded = pc.dictionary_encode(text)
    table = []
    for value in encoded.dictionary.to_pylist():
        parts, missing = date_parts(value, column)
        table.append(parts + ([float(missing)] if column.indicator else []))
    fill, _ = date_parts("", column)
    table.append(fill + ([1.0] if column.indicator else []))
    indices = encoded.indices.fill_null(len(table) - 1).to_numpy()
    np.take(np.asarray(table, dtype=np.float32), indices, axis=0, out=out)


def _numeric(column: NumericColumn, values: Any, out: np.ndarray) -> None:
    numbers = np.asarray(values, dtype=np.float32).reshape(-1)
    gaps = np.isnan(numbers)
    out[:, 0] = numbers
    out[gaps, 0] = np.float32(column.fill)
    if column.indicator:
        out[:, 1] = gaps


def encode(encoding: TableEncoding, raw: Raw) -> np.ndarray:
    """The network's features for raw columns (every encoded column must be in ``raw``),
    written column block by column block into one float32 matrix."""
    rows = len(raw[encoding.columns[0].name])
    out = np.empty((rows, encoding.width), dtype=np.float32)
    for column, (start, end) in zip(encoding.columns, encoding.spans(), strict=True):
        values, block = raw[column.name], out[:, start:end]
        if isinstance(column, NumericColumn):
            _numeric(column, values, block)
        elif isinstance(column, CategoricalColumn):
            _categorical(column, as_text(values), block)
        else:
            _datetime(column, as_text(values), block)
    return out


def feeds(encoding: TableEncoding, raw: Raw, used: set[str] | None = None) -> dict[str, np.ndarray]:
    """onnxruntime feeds for the served graph: [n, 1] float32 numbers or object text."""
    result: dict[str, np.ndarray] = {}
    for column in encoding.columns:
        if used is not None and column.name not in used:
            continue
        values = raw[column.name]
        if isinstance(column, NumericColumn):
            result[column.name] = np.asarray(values, dtype=np.float32).reshape(-1, 1)
        else:
            text = values.to_pylist() if isinstance(values, pa.Array | pa.ChunkedArray) else values
            result[column.name] = np.asarray(text, dtype=object).reshape(-1, 1)
    return result


def plain(raw: Raw) -> dict[str, np.ndarray]:
    """Raw columns as numpy: float32 numbers, object arrays of text."""
    result: dict[str, np.ndarray] = {}
    for name, values in raw.items():
        if isinstance(values, pa.Array | pa.ChunkedArray):
            result[name] = np.asarray(values.to_pylist(), dtype=object)
        else:
            array = np.asarray(values).reshape(-1)
            result[name] = array if array.dtype == object else array.astype(np.float32)
    return result


def stress_rows(encoding: TableEncoding, raw: Raw, count: int) -> dict[str, np.ndarray]:
    """``count`` raw rows, then the same rows with every other value missing, then with
    values training never saw (unknown categories, text that is not a date, numbers far out
    of range): what the parity check runs besides ordinary rows."""
    rows = {name: values[:count] for name, values in plain(raw).items()}
    gaps, unseen = {}, {}
    for column in encoding.columns:
        values = rows[column.name]
        every_other = np.arange(len(values)) % 2 == 0
        if isinstance(column, NumericColumn):
            gaps[column.name] = np.where(every_other, np.float32(np.nan), values)
            unseen[column.name] = (values * np.float32(1000)).astype(np.float32)
        else:
            gaps[column.name] = np.where(every_other, "", values).astype(object)
            strange = "not a date" if isinstance(column, DatetimeColumn) else "\u2603 unseen"
            unseen[column.name] = np.where(
                every_other,
                strange,
                "1970-01-01T23:59" if isinstance(column, DatetimeColumn) else "zz-other",
            ).astype(object)
    return {name: np.concatenate([rows[name], gaps[name], unseen[name]]) for name in rows}

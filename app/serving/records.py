"""``/v1`` predict for models that take one input per source column: records keyed by
column name (``null`` or an absent key is a gap), or positional rows when every column is
numeric. Every refusal names the row and the column."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.contracts.encoding import FLOAT32_MAX, is_datetime, number_or_gap
from app.contracts.signature import TensorSpec
from app.core.errors import InvalidInput
from app.serving.json_values import shown


def _shown(value: Any) -> str:
    return shown(value)


def _number(value: Any, where: str, words_as_gaps: bool = False) -> float:
    if value is None:
        return math.nan
    if words_as_gaps and isinstance(value, str):  # as the upload read this column's words
        number = number_or_gap(value)
        if not math.isnan(number) and not abs(number) <= FLOAT32_MAX:
            raise InvalidInput(f"{where} is {_shown(value)}: outside the float32 range")
        return number
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a number or null, got {_shown(value)}")
    if isinstance(value, int) and abs(value) > FLOAT32_MAX:
        raise InvalidInput(f"{where} is {_shown(value)}: outside the float32 range")
    number = float(value)
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise InvalidInput(f"{where} is {_shown(value)}: outside the float32 range")
    return number


def _text(value: Any, column: TensorSpec, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # as the CSV wrote it, when a category says so
        word = "true" if value else "false"
        return next((c for c in column.categories or () if c.lower() == word), word)
    if isinstance(value, int | float) and column.kind == "categorical":
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be text or null, got {_shown(value)}")
    text = value.strip()
    if column.kind == "datetime" and text and not is_datetime(text):
        raise InvalidInput(f"{where} is not an ISO date or date and time: {_shown(value)}")
    return text


def _records(inputs: list[Any], columns: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    """Every row as a record; positional rows are read in the order of the columns."""
    known = [column.name for column in columns if column.kind != "ignored"]
    records = []
    for index, row in enumerate(inputs):
        if isinstance(row, dict):
            unknown = [key for key in row if key not in {c.name for c in columns}]
            if unknown:
                raise InvalidInput(
                    f"inputs[{index}] has unknown column {_shown(unknown[0])}; "
                    f"the model takes {known[:30]}"
                )
            records.append(row)
        elif isinstance(row, list):
            if any(column.kind != "numeric" for column in columns if column.kind != "ignored"):
                raise InvalidInput(
                    f"inputs[{index}] is a list; this model takes text or "
                    "dates, so send records keyed by column name"
                )
            if len(row) != len(known):
                raise InvalidInput(
                    f"inputs[{index}] has {len(row)} values; the model "
                    f"expects {len(known)} ({known[:30]})"
                )
            records.append(dict(zip(known, row, strict=True)))
        else:
            raise InvalidInput(f"inputs[{index}] must be an object keyed by column name")
    return records


def parse_records(
    payload: dict[str, Any], columns: tuple[TensorSpec, ...], max_rows: int
) -> dict[str, np.ndarray]:
    """The feeds for ``{"inputs": [{column: value, ...}, ...]}``: [n, 1] float32 numbers
    (NaN for gaps) and text ('' for gaps) for every column the model reads."""
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of records keyed by column name")
    if len(inputs) > max_rows:
        raise InvalidInput(f"inputs has {len(inputs)} rows; at most {max_rows} per request")
    records = _records(inputs, columns)
    feeds: dict[str, np.ndarray] = {}
    for column in columns:
        if not column.required:
            continue
        name = column.name
        if column.kind == "numeric":
            feeds[name] = np.array(
                [
                    _number(record.get(name), f"inputs[{row}][{name!r}]", column.words_as_gaps)
                    for row, record in enumerate(records)
                ],
                dtype=np.float32,
            ).reshape(-1, 1)
        else:
            feeds[name] = np.array(
                [
                    _text(record.get(name), column, f"inputs[{row}][{name!r}]")
                    for row, record in enumerate(records)
                ],
                dtype=object,
            ).reshape(-1, 1)
    return feeds

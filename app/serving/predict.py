"""The simple predict protocol: JSON rows in, labels (and probabilities) or values out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from app.contracts.encoding import FLOAT32_MAX
from app.contracts.enums import Task
from app.core.errors import BadRequest, InvalidInput
from app.serving.json_values import first_boolean, has_json_booleans, shown
from app.serving.records import parse_records
from app.serving.runtime import LoadedModel


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a predict request, checked for its one field."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvalidInput('body must be a JSON object with "inputs": a list of rows')
    if len(payload) > 1:
        extra = sorted(set(payload) - {"inputs"})
        raise InvalidInput(f"unknown fields in body: {extra}; expected only 'inputs'")
    return payload


def parse_feeds(body: bytes, model: LoadedModel, *, max_rows: int) -> dict[str, np.ndarray]:
    """The model's feeds for a predict body: records (or rows) for a model that takes
    columns, rows of numbers for a model that takes one tensor."""
    payload = parse_body(body)
    if model.columns is not None:
        return parse_records(payload, model.columns, max_rows)
    return model.feeds_of(
        parse_rows(
            payload,
            n_features=model.n_features,
            max_rows=model.max_rows(max_rows),  # lower for an upload needing much memory per row
            may_hold_booleans=has_json_booleans(body),
            why_max=model.rows_note(max_rows),
        )
    )


def parse_rows(
    payload: dict[str, Any],
    *,
    n_features: int,
    max_rows: int,
    may_hold_booleans: bool = True,
    why_max: str = "",
) -> np.ndarray:
    """``{"inputs": [[...], ...]}`` to a float32 matrix, with a 4xx naming what is wrong
    (``why_max``: why ``max_rows`` is what it is, when that is not the gateway's limit)."""
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"inputs must be a non-empty list of rows of {n_features} numbers")
    if len(inputs) > max_rows:
        raise InvalidInput(
            f"inputs has {len(inputs)} rows; at most {max_rows} per request{why_max}"
        )
    if not may_hold_booleans:  # the common case: numbers only, checked in one conversion
        try:
            array = np.asarray(inputs)
        except (ValueError, TypeError, OverflowError):
            array = None
        if (
            array is not None
            and array.ndim == 2
            and array.shape[1] == n_features
            and array.dtype.kind in "iuf"
        ):
            return _float32(array)
    for index, row in enumerate(inputs):
        if not isinstance(row, list):
            raise InvalidInput(f"inputs[{index}] must be a list of {n_features} numbers")
        if len(row) != n_features:
            raise InvalidInput(
                f"inputs[{index}] has {len(row)} values; the model expects {n_features} features"
            )
    try:
        array = np.asarray(inputs)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, or a huge integer
        array = None
    if array is None or array.dtype.kind not in "iuf" or array.ndim != 2:
        raise InvalidInput(f"inputs must hold only numbers; {_first_non_number(inputs)}")
    if may_hold_booleans and (found := first_boolean(inputs, "inputs")):
        raise InvalidInput(f"inputs must hold only numbers; {found} is a boolean")
    return _float32(array)


def _float32(array: np.ndarray) -> np.ndarray:
    """Numbers decoded from JSON as float32, refused when one is outside its range. JSON
    holds no NaN or infinity, and every 64-bit integer fits float32's range, so only
    floats are looked at (before the cast, so nothing overflows)."""
    if array.dtype.kind == "f" and array.size and not np.abs(array).max() <= FLOAT32_MAX:
        raise InvalidInput("inputs hold a value outside the float32 range")
    return array.astype(np.float32)


def _first_non_number(inputs: list[list[Any]]) -> str:
    for row_index, row in enumerate(inputs):
        for column, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"inputs[{row_index}][{column}] is {_shown(value)}"
    return "found a value that is not a number"


def answer(model: LoadedModel, output: np.ndarray) -> dict[str, Any]:
    """The model's output as the predict answer: labels, probabilities and the class of
    each probability column for classification, values for regression."""
    if model.task == Task.CLASSIFICATION and model.labels is not None:
        labels = model.labels
        predictions = [labels[index] for index in output.argmax(axis=1).tolist()]
        return {
            "predictions": predictions,
            "probabilities": output.tolist(),
            "classes": model.classes,
        }
    return {"predictions": output[:, 0].astype(np.float64).tolist()}


def _shown(value: Any) -> str:
    return shown(value)

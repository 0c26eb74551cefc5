"""The simple predict protocol: JSON rows in, labels (and probabilities) or values out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from app.errors import BadRequest, InvalidInput
from app.serving.runtime import LoadedModel


def parse_rows(body: bytes, *, n_features: int, max_rows: int) -> np.ndarray:
    """``{"inputs": [[...], ...]}`` to a float32 matrix, with a 4xx naming what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvalidInput('body must be a JSON object with "inputs": a list of rows')
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        raise InvalidInput(f"unknown fields in body: {extra}; expected only 'inputs'")
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"inputs must be a non-empty list of rows of {n_features} numbers")
    if len(inputs) > max_rows:
        raise InvalidInput(f"inputs has {len(inputs)} rows; at most {max_rows} per request")
    for index, row in enumerate(inputs):
        if not isinstance(row, list):
            raise InvalidInput(f"inputs[{index}] must be a list of {n_features} numbers")
        if len(row) != n_features:
            raise InvalidInput(f"inputs[{index}] has {len(row)} values; the model expects "
                               f"{n_features} features")
    try:
        array = np.asarray(inputs)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, or a huge integer
        array = None
    if array is None or array.dtype.kind not in "iuf" or array.ndim != 2:
        raise InvalidInput(f"inputs must hold only numbers; {_first_non_number(inputs)}")
    with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
        rows = array.astype(np.float32, copy=False)
    if not np.isfinite(rows).all():
        raise InvalidInput("inputs hold a value outside the float32 range")
    return rows


def _first_non_number(inputs: list[list[Any]]) -> str:
    for row_index, row in enumerate(inputs):
        for column, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"inputs[{row_index}][{column}] is {_shown(value)}"
    return "found a value that is not a number"


def answer(model: LoadedModel, output: np.ndarray) -> dict[str, Any]:
    """The model's output as the predict answer: labels and probabilities for
    classification, values for regression."""
    if model.task == "classification" and model.labels is not None:
        labels = model.labels
        predictions = [labels[index] for index in output.argmax(axis=1).tolist()]
        return {"predictions": predictions, "probabilities": output.tolist()}
    return {"predictions": output[:, 0].astype(np.float64).tolist()}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

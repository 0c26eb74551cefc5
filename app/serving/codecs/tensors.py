"""Open Inference Protocol tensors checked against the model they are for, the same for
HTTP and gRPC: input names, datatypes, shapes, rows (the model's cap included) and values
(no NaN or Inf where the model cannot take them)."""

from __future__ import annotations

import numpy as np

from app.core.errors import BadRequest, BrokenInvariant
from app.serving.oip import NAMES, InferRequest
from app.serving.runtime import Feeds, LoadedModel


def _check_outputs(model: LoadedModel, request: InferRequest) -> None:
    wanted = request.outputs if request.outputs is not None else [model.output_name]
    unknown = sorted(set(wanted) - {model.output_name})
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; the model has ['{model.output_name}']")


def _column_feeds(model: LoadedModel, request: InferRequest, max_rows: int) -> Feeds:
    """The feeds of a model that takes columns: each an [n, 1] (or [n]) tensor, FP32 (or
    another number type) for numbers with NaN for gaps, BYTES for text and dates."""
    if model.columns is None:
        raise BrokenInvariant("model.columns is None")
    columns = {column.name: column for column in model.columns}
    unknown = sorted(set(request.inputs) - set(columns))
    if unknown:
        raise BadRequest(
            f"unknown input(s) {unknown[:10]}; the model takes {[name for name in columns][:30]}"
        )
    feeds: Feeds = {}
    rows = None
    for name, column in columns.items():
        if not column.required:
            continue
        if name not in request.inputs:
            raise BadRequest(f"missing input '{name}'")
        array = request.inputs[name]
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 1):
            raise BadRequest(
                f"input '{name}' has shape {list(array.shape)}; the model "
                f"expects [1 to {max_rows}, 1]"
            )
        rows = len(array) if rows is None else rows
        if len(array) != rows or not 1 <= rows <= max_rows:
            raise BadRequest(
                f"input '{name}' has {len(array)} rows; every input needs the "
                f"same number, 1 to {max_rows}"
            )
        text = array.dtype == object
        if text != (column.datatype == "BYTES"):
            raise BadRequest(
                f"input '{name}' has datatype {NAMES[array.dtype]}; the model "
                f"expects {column.datatype}"
            )
        if not text:
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
            if np.isinf(array).any():
                raise BadRequest(f"input '{name}' contains Inf (or a value outside float32)")
        feeds[name] = array.reshape(-1, 1)
    return feeds


def _tensor_feeds(model: LoadedModel, request: InferRequest, gateway_rows: int) -> Feeds:
    unknown = sorted(set(request.inputs) - {model.input_name})
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes ['{model.input_name}']")
    if model.input_name not in request.inputs:
        raise BadRequest(f"missing input '{model.input_name}'")
    array = request.inputs[model.input_name]
    datatype = NAMES[array.dtype]
    if datatype != model.input_datatype:
        raise BadRequest(
            f"input '{model.input_name}' has datatype {datatype}; the model "
            f"expects {model.input_datatype}"
        )
    max_rows = model.max_rows(gateway_rows)
    if tuple(array.shape[1:]) != model.input_shape or not 1 <= array.shape[0] <= max_rows:
        raise BadRequest(
            f"input '{model.input_name}' has shape {list(array.shape)}; the model "
            f"expects [1 to {max_rows}, {', '.join(map(str, model.input_shape))}]"
            f"{model.rows_note(gateway_rows) if array.shape[0] > max_rows else ''}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input '{model.input_name}' contains NaN or Inf")
    return {model.input_name: array}


def infer_feeds(model: LoadedModel, request: InferRequest, max_rows: int) -> Feeds:
    """The feeds of a decoded request, checked against the model."""
    _check_outputs(model, request)
    if model.columns is not None:
        return _column_feeds(model, request, max_rows)
    return _tensor_feeds(model, request, max_rows)

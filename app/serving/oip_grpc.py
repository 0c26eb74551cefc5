"""The Open Inference Protocol's gRPC messages to and from what the HTTP codec uses: a
``ModelInferRequest`` becomes the same ``InferRequest`` (tensors in ``raw_input_contents``
or in typed ``contents``), and outputs go back as ``raw_output_contents``, as Triton does.
Sizes are checked against the declared shapes and the limits before any array is built."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.core.errors import BadRequest
from app.serving.grpc_schema import message
from app.serving.oip import NAMES, TEXT, InferRequest, declared, text_from_binary

InferRequestMessage = message("ModelInferRequest")
InferResponseMessage = message("ModelInferResponse")

# Which typed ``contents`` field holds each datatype when raw contents are not used.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _from_raw(name: str, blob: bytes, shape: list[int], dtype: np.dtype[Any]) -> np.ndarray:
    if dtype == TEXT:
        return text_from_binary(name, blob, shape)
    expected = math.prod(shape) * dtype.itemsize
    if len(blob) != expected:
        raise BadRequest(
            f"input '{name}': raw_input_contents holds {len(blob)} bytes but "
            f"shape {shape} of {NAMES[dtype]} needs {expected}"
        )
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _from_contents(name: str, tensor: Any, shape: list[int], dtype: np.dtype[Any]) -> np.ndarray:
    datatype = "BYTES" if dtype == TEXT else NAMES[dtype]
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(f"input '{name}': {datatype} tensors must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise BadRequest(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, "
            f"contents.{field} has {len(values)}"
        )
    if dtype == TEXT:
        try:
            texts = [value.decode("utf-8") for value in values]
        except UnicodeDecodeError:
            raise BadRequest(f"input '{name}': BYTES contents are not UTF-8 text") from None
        return np.asarray(texts, dtype=object).reshape(shape)
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(dtype).reshape(shape)


def decode_grpc(request: Any, *, max_elements: int) -> InferRequest:
    """The ``InferRequest`` of a ``ModelInferRequest``; BadRequest names what is wrong."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for "
            f"{len(request.inputs)} inputs; send one per input, or none"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name, shape, dtype = declared(
            {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)},
            max_elements,
        )
        if name in inputs:
            raise BadRequest(f"input '{name[:80]}' is given twice")
        inputs[name] = (
            _from_raw(name, raw[index], shape, dtype)
            if raw
            else _from_contents(name, tensor, shape, dtype)
        )
    outputs = [output.name for output in request.outputs] or None
    return InferRequest(
        inputs=inputs, outputs=outputs, binary_default=True, request_id=request.id or None
    )


def _raw_of(array: np.ndarray) -> bytes:
    if array.dtype == TEXT:
        encoded = [str(value).encode("utf-8") for value in array.reshape(-1)]
        return b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
    return np.ascontiguousarray(array).tobytes()


def encode_grpc(
    model_name: str, version: int, request: InferRequest, results: dict[str, np.ndarray]
) -> Any:
    """The ``ModelInferResponse`` carrying ``results`` as raw output contents."""
    response = InferResponseMessage(
        model_name=model_name, model_version=str(version), id=request.request_id or ""
    )
    for name, array in results.items():
        response.outputs.add(name=name, datatype=NAMES[array.dtype], shape=list(array.shape))
        response.raw_output_contents.append(_raw_of(array))
    return response

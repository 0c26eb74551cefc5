"""Open Inference Protocol (KServe v2 / Triton) codec: JSON and the binary tensor extension.

Every size is checked against the declared shape and the limits before any array is built."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.core.errors import BadRequest
from app.serving.json_values import first_boolean, has_json_booleans, shown

HEADER_LENGTH = "inference-header-content-length"

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NAMES = {dtype: name for name, dtype in DATATYPES.items()}
NAMES[np.dtype(object)] = "BYTES"
TEXT = np.dtype(object)  # BYTES tensors decode to arrays of str
MAX_RANK = 8
_DECIMAL = re.compile(r"[0-9]{1,15}")
LIMIT_NOTE = (
    " (the smaller of KILN_MAX_TENSOR_ELEMENTS and KILN_MAX_PREDICT_ROWS rows of the "
    "model's values)"
)


@dataclass(frozen=True)
class InferRequest:
    """A decoded request: input arrays by name, which outputs to return and how."""

    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # None: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False
    request_id: str | None = None


def declared(spec: dict[str, Any], max_elements: int) -> tuple[str, list[int], np.dtype[Any]]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("every input needs a string 'name'")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= MAX_RANK
        or not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape)
    ):
        raise BadRequest(
            f"input '{name}': 'shape' must be a list of 1 to {MAX_RANK} non-negative integers"
        )
    if any(dim > max_elements for dim in shape):
        raise BadRequest(
            f"input '{name}': shape {_shown(shape)} has a dimension of "
            f"{max(shape)} elements; the limit is {max_elements}{LIMIT_NOTE}"
        )
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in DATATYPES):
        raise BadRequest(
            f"input '{name}': unknown datatype {shown(datatype)}; expected one of "
            f"{sorted([*DATATYPES, 'BYTES'])}"
        )
    elements = math.prod(shape)
    if elements > max_elements:
        raise BadRequest(
            f"input '{name}': shape {shape} has {elements} elements; the limit is "
            f"{max_elements}{LIMIT_NOTE}"
        )
    return name, shape, TEXT if datatype == "BYTES" else DATATYPES[datatype]


def _flat_strings(name: str, data: list[Any], depth: int = 0) -> list[str]:
    """Strings of (nested) JSON lists in row-major order."""
    flat: list[str] = []
    for item in data:
        if isinstance(item, list) and depth < MAX_RANK:
            flat.extend(_flat_strings(name, item, depth + 1))
        elif isinstance(item, str):
            flat.append(item)
        else:
            raise BadRequest(f"input '{name}': BYTES 'data' must hold only strings")
    return flat


def _text_from_json(name: str, data: Any, shape: list[int]) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    values = _flat_strings(name, data)
    try:  # JSON's \ud800 escapes decode to strings no tensor can hold
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"input '{name}': BYTES data must be valid UTF-8 text") from None
    if len(values) != math.prod(shape):
        raise BadRequest(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, "
            f"'data' has {len(values)}"
        )
    return np.asarray(values, dtype=object).reshape(shape)


def text_from_binary(name: str, blob: bytes, shape: list[int]) -> np.ndarray:
    """Triton's BYTES layout: each element is a 4-byte little-endian length, then its
    bytes (UTF-8 text here)."""
    values: list[str] = []
    offset = 0
    for _ in range(math.prod(shape)):
        if offset + 4 > len(blob):
            raise BadRequest(f"input '{name}': BYTES data ends before element {len(values)}")
        length = int.from_bytes(blob[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(blob):
            raise BadRequest(
                f"input '{name}': BYTES element {len(values)} claims {length} "
                "bytes past the end of its data"
            )
        try:
            values.append(blob[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(
                f"input '{name}': BYTES element {len(values)} is not UTF-8 text"
            ) from None
        offset += length
    if offset != len(blob):
        raise BadRequest(f"input '{name}': {len(blob) - offset} bytes after its last element")
    return np.asarray(values, dtype=object).reshape(shape)


def _from_json(
    name: str, data: Any, shape: list[int], dtype: np.dtype[Any], may_hold_booleans: bool
) -> np.ndarray:
    if dtype == TEXT:
        return _text_from_json(name, data, shape)
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"input '{name}': 'data' is ragged") from None
    if array.dtype.kind not in "biuf":
        raise BadRequest(f"input '{name}': 'data' must hold only numbers or booleans")
    if dtype.kind != "b" and may_hold_booleans and (found := first_boolean(data, "data")):
        raise BadRequest(
            f"input '{name}': {found} is a boolean, but the datatype is {NAMES[dtype]}"
        )
    if array.size != math.prod(shape):
        raise BadRequest(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, "
            f"'data' has {array.size}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return array.reshape(shape).astype(dtype, copy=False)


def _header_split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not _DECIMAL.fullmatch(header_length) or int(header_length) > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length[:40]!r} does not fit "
            f"a body of {len(body)} bytes"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _object(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a JSON object (absent counts as empty), else a 400 naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: 'parameters' must be a JSON object")
    return value


def _binary_size(spec: dict[str, Any], name: str) -> int | None:
    size = _object(spec.get("parameters"), f"input '{name}'").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"input '{name}': binary_data_size must be a non-negative integer")
    return size


def _requested_outputs(payload: dict[str, Any]) -> tuple[list[str] | None, set[str]]:
    requested = payload.get("outputs")
    if requested is None:
        return None, set()
    if not isinstance(requested, list):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names: list[str] = []
    binary: set[str] = set()
    for index, entry in enumerate(requested):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadRequest(f"outputs[{index}] must be an object with a string 'name'")
        names.append(entry["name"])
        if _object(entry.get("parameters"), f"outputs[{index}]").get("binary_data"):
            binary.add(entry["name"])
    return names, binary


def _json(head: bytes) -> Any:
    """The JSON header. ``NaN`` (how tritonclient writes a gap in an FP32 tensor) is not
    JSON, so a header orjson refuses is read again by the standard library, which takes it."""
    try:
        return orjson.loads(head)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(head)
        except (ValueError, RecursionError):
            raise BadRequest(f"request is not valid JSON: {error}") from None


def decode(body: bytes, header_length: str | None, *, max_elements: int) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header plus binary tensors)."""
    head, tail = _header_split(body, header_length)
    payload = _json(head)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise BadRequest("request must be a JSON object with an 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for spec in payload["inputs"]:
        if not isinstance(spec, dict):
            raise BadRequest("every entry of 'inputs' must be an object")
        name, shape, dtype = declared(spec, max_elements)
        if name in inputs:
            raise BadRequest(f"input '{name[:80]}' is given twice")
        size = _binary_size(spec, name)
        if size is None:
            inputs[name] = _from_json(name, spec.get("data"), shape, dtype, has_json_booleans(head))
            continue
        if dtype == TEXT:
            if offset + size > len(tail):
                raise BadRequest(f"input '{name}': the body ends before its {size} binary bytes")
            inputs[name] = text_from_binary(name, tail[offset : offset + size], shape)
            offset += size
            continue
        expected = math.prod(shape) * dtype.itemsize
        if size != expected:
            raise BadRequest(
                f"input '{name}': binary_data_size {size} but shape {shape} of "
                f"{NAMES[dtype]} needs {expected} bytes"
            )
        if offset + size > len(tail):
            raise BadRequest(f"input '{name}': the body ends before its {size} binary bytes")
        inputs[name] = np.frombuffer(
            tail, dtype=dtype, count=math.prod(shape), offset=offset
        ).reshape(shape)
        offset += size
    if offset != len(tail):
        raise BadRequest(f"{len(tail) - offset} bytes after the last binary input")
    parameters = _object(payload.get("parameters"), "request")
    outputs, binary = _requested_outputs(payload)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    return InferRequest(
        inputs=inputs,
        outputs=outputs,
        binary_outputs=binary,
        binary_default=bool(parameters.get("binary_data_output")),
        request_id=request_id,
    )


def _shown(shape: list[int]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else text[:77] + "..."


def encode(
    model_name: str, version: int, request: InferRequest, results: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers; binary outputs follow the JSON header in order."""
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in results.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": NAMES[array.dtype],
            "shape": list(array.shape),
        }
        if request.binary_default or name in request.binary_outputs:
            blob = np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)
    head: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(version),
        "outputs": described,
    }
    if request.request_id is not None:
        head["id"] = request.request_id
    header = orjson.dumps(head)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }

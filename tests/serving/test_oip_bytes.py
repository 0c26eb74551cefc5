"""BYTES tensors in the Open Inference Protocol codec: JSON strings and Triton's binary
layout (4-byte little-endian length, then the bytes), and every malformed form refused with
a 400 that names the input."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from app.core.errors import BadRequest
from app.serving.oip import decode


def binary_request(
    name: str, blob: bytes, shape: list[int], size: int | None = None
) -> tuple[bytes, str]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": shape,
                    "parameters": {"binary_data_size": size or len(blob)},
                }
            ]
        }
    )
    return head + blob, str(len(head))


def packed(*texts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(text)) + text for text in texts)


def test_json_strings_decode_in_row_major_order() -> None:
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "island",
                    "datatype": "BYTES",
                    "shape": [2, 2],
                    "data": [["a", "b"], ["", "Ünïcode"]],
                }
            ]
        }
    )
    array = decode(body, None, max_elements=100).inputs["island"]
    assert array.dtype == object and array.tolist() == [["a", "b"], ["", "Ünïcode"]]


def test_binary_strings_decode() -> None:
    body, length = binary_request("sex", packed(b"male", b"", "fé".encode()), [3, 1])
    array = decode(body, length, max_elements=100).inputs["sex"]
    assert array.tolist() == [["male"], [""], ["fé"]]


def test_json_nan_from_tritonclient_is_a_gap() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [NaN, 1]}]}'
    array = decode(body, None, max_elements=100).inputs["x"]
    assert np.isnan(array[0, 0]) and array[1, 0] == 1


@pytest.mark.parametrize(
    ("blob", "shape", "size", "message"),
    [
        (packed(b"ab")[:5], [1, 1], None, "BYTES element 0 claims 2 bytes past the end"),
        (packed(b"ab"), [2, 1], None, "BYTES data ends before element 1"),
        (packed(b"ab") + b"x", [1, 1], None, "1 bytes after its last element"),
        (packed(b"\xff\xfe"), [1, 1], None, "BYTES element 0 is not UTF-8 text"),
        (packed(b"ab"), [1, 1], 60, "the body ends before its 60 binary bytes"),
        (struct.pack("<I", 2**32 - 1), [1, 1], None, "claims 4294967295 bytes past the end"),
    ],
)
def test_malformed_binary_bytes_are_refused(
    blob: bytes, shape: list[int], size: int | None, message: str
) -> None:
    body, length = binary_request("island", blob, shape, size)
    with pytest.raises(BadRequest, match=message):
        decode(body, length, max_elements=100)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "BYTES 'data' must hold only strings"),
        (["a", None], "BYTES 'data' must hold only strings"),
        (["a"], r"shape \[2, 1\] needs 2 values, 'data' has 1"),
        ("ab", "'data' must be a list"),
    ],
)
def test_malformed_json_bytes_are_refused(data: object, message: str) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "island", "datatype": "BYTES", "shape": [2, 1], "data": data}]}
    )
    with pytest.raises(BadRequest, match=message):
        decode(body, None, max_elements=100)

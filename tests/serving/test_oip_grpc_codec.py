"""The gRPC codec on hostile messages: whatever the shapes, datatypes and bytes, decoding
either gives arrays that match what was declared or refuses with a BadRequest that names
the input; it never raises anything else and never builds an array past the limit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import BadRequest
from app.serving.grpc_schema import message
from app.serving.oip import InferRequest
from app.serving.oip_grpc import decode_grpc, encode_grpc

DATATYPES = [
    "FP32",
    "FP64",
    "INT8",
    "INT32",
    "INT64",
    "UINT8",
    "BOOL",
    "BYTES",
    "FP16",
    "FP128",
    "",
]
LIMIT = 4096


@st.composite
def requests(draw: st.DrawFn) -> object:
    request = message("ModelInferRequest")(model_name="m")
    count = draw(st.integers(0, 3))
    raw = draw(st.booleans())
    for _ in range(count):
        shape = draw(st.lists(st.integers(-2, 5000), min_size=0, max_size=4))
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["input", "x", ""])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=shape,
        )
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=16)))
            tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
    if raw and draw(st.booleans()):
        request.raw_input_contents.append(b"extra")
    return request


@settings(max_examples=400, deadline=None)
@given(requests())
def test_any_message_decodes_or_is_refused_with_a_reason(request: object) -> None:
    try:
        decoded = decode_grpc(request, max_elements=LIMIT)
    except BadRequest as refused:
        assert refused.message
        return
    for tensor in request.inputs:  # type: ignore[attr-defined]
        array = decoded.inputs[tensor.name]
        assert list(array.shape) == list(tensor.shape)
        assert math.prod(array.shape) <= LIMIT


def test_outputs_round_trip_as_raw_contents() -> None:
    request = InferRequest(inputs={}, outputs=None, request_id="r1")
    numbers = np.arange(6, dtype=np.float32).reshape(2, 3)
    texts = np.asarray([["a", "bé"]], dtype=object)
    response = encode_grpc("m", 3, request, {"y": numbers, "t": texts})
    assert response.model_version == "3" and response.id == "r1"
    assert [output.datatype for output in response.outputs] == ["FP32", "BYTES"]
    assert np.array_equal(
        np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 3), numbers
    )
    assert response.raw_output_contents[1] == (b"\x01\x00\x00\x00a" + b"\x03\x00\x00\x00b\xc3\xa9")

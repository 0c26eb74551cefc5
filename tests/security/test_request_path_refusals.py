"""Inputs that used to answer 500 on the inference path now get a 4xx naming the problem: a
deeply nested row, a datatype that is not a string, text JSON can only spell as a lone
surrogate, digits str.isdigit takes and int() refuses (a header, a gRPC version, a
dashboard cookie), an upload that onnxruntime refuses on some values, and an upload whose
answer is not the shape its signature promises. The gateway keeps serving after each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.api.grpc_service import _version
from app.core.config import Settings
from app.core.errors import BadRequest
from app.main import create_app
from app.ui.session import COOKIE
from tests.api.test_model_upload import upload

V2_HEADERS = {"Content-Type": "application/json"}


def _model(nodes: list, initializers: list, outputs: list) -> bytes:
    graph = helper.make_graph(
        nodes,
        "refusals",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def gathers_by_value() -> bytes:
    """Bounded (static shapes), but its GatherElements index comes from the input: a value
    of 100 is out of range, and onnxruntime refuses the run."""
    nodes = [
        helper.make_node("Equal", ["x", "hundred"], ["armed"]),
        helper.make_node("Where", ["armed", "x", "nought"], ["chosen"]),
        helper.make_node("Cast", ["chosen"], ["index"], to=TensorProto.INT64),
        helper.make_node("GatherElements", ["x", "index"], ["picked"], axis=1),
        helper.make_node("Slice", ["picked", "start", "end", "axis"], ["y"]),
    ]
    constants = [
        numpy_helper.from_array(np.array(100.0, np.float32), "hundred"),
        numpy_helper.from_array(np.array(0.0, np.float32), "nought"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([1], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])]
    return _model(nodes, constants, outputs)


def answers_a_vector_when_asked() -> bytes:
    """Sandboxed (an If): [batch, 1] as declared, but [batch] when x[0, 0] == 43."""
    flat = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes1"], ["then_out"], keepdims=0)],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
    )
    column = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes1"], ["else_out"], keepdims=1)],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Gather", ["x", "zero"], ["row"], axis=0),
        helper.make_node("Gather", ["row", "zero"], ["first"], axis=0),
        helper.make_node("Equal", ["first", "trigger"], ["hit"]),
        helper.make_node("If", ["hit"], ["y"], then_branch=flat, else_branch=column),
    ]
    constants = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(43.0, np.float32), "trigger"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])]
    return _model(nodes, constants, outputs)


@pytest.fixture
def gateway(settings: Settings, admin: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_reaper=False)) as client:
        for name, content in (
            ("gathers", gathers_by_value()),
            ("vector", answers_a_vector_when_asked()),
        ):
            status, body = upload(client, admin, content, name=name)
            assert status == 201, body
        yield client


def still_serves(client: TestClient, admin: dict[str, str]) -> None:
    answer = client.post("/v1/models/gathers/predict", headers=admin, json={"inputs": [[0, 1, 2]]})
    assert answer.status_code == 200, answer.text


def test_a_deeply_nested_row_is_refused(gateway: TestClient, admin: dict[str, str]) -> None:
    nested: object = 1.0
    for _ in range(900):
        nested = [nested]
    answer = gateway.post("/v1/models/gathers/predict", headers=admin, json={"inputs": [nested]})
    assert 400 <= answer.status_code < 500, answer.text
    still_serves(gateway, admin)


def test_v2_datatypes_and_text_are_checked_before_use(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    listed = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": ["FP32"], "data": [1, 2, 3]}]}
    answer = gateway.post("/v2/models/gathers/infer", headers=admin, json=listed)
    assert answer.status_code == 400 and "datatype" in answer.json()["error"]
    surrogate = (
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}'
    )
    answer = gateway.post(
        "/v2/models/gathers/infer", headers={**admin, **V2_HEADERS}, content=surrogate
    )
    assert answer.status_code == 400 and "UTF-8" in answer.json()["error"], answer.text
    header = gateway.post(
        "/v2/models/gathers/infer",
        headers={**admin, **V2_HEADERS, "Inference-Header-Content-Length": "²".encode("latin-1")},
        content=b'{"inputs": []}',
    )
    assert 400 <= header.status_code < 500, header.text
    still_serves(gateway, admin)


@pytest.mark.parametrize("text", ["²", "٣", "1²", "0", "01", "1000000000"])
def test_a_grpc_version_is_ascii_digits(text: str) -> None:
    with pytest.raises(BadRequest):
        _version(text)
    assert _version("12") == 12


def test_a_dashboard_cookie_of_other_digits_is_refused(gateway: TestClient) -> None:
    cookie = f"{COOKIE}=².².x".encode("latin-1")  # what a browser may send, byte for byte
    answer = gateway.get("/ui/jobs", headers={"cookie": cookie}, follow_redirects=False)
    assert answer.status_code < 500, answer.text


def test_an_upload_refused_by_onnxruntime_on_some_values_is_a_422(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    for body in ({"inputs": [[100, 0, 0]]}, {"inputs": [[0, 1, 2], [100, 0, 0]]}):
        answer = gateway.post("/v1/models/gathers/predict", headers=admin, json=body)
        assert answer.status_code == 422, answer.text
        assert "version 1 of 'gathers' failed on this request" in answer.json()["detail"]
    still_serves(gateway, admin)


def test_an_upload_answering_another_shape_than_its_signature_is_a_422(
    gateway: TestClient, admin: dict[str, str]
) -> None:
    calm = gateway.post("/v1/models/vector/predict", headers=admin, json={"inputs": [[1, 2, 3]]})
    assert calm.status_code == 200, calm.text
    for protocol in ("v1", "v2"):
        if protocol == "v1":
            answer = gateway.post(
                "/v1/models/vector/predict", headers=admin, json={"inputs": [[43, 0, 0]]}
            )
            message = answer.json()["detail"]
        else:
            tensor = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [43, 0, 0]}
            answer = gateway.post(
                "/v2/models/vector/infer", headers=admin, json={"inputs": [tensor]}
            )
            message = answer.json()["error"]
        assert answer.status_code == 422, answer.text
        assert "answered shape [1]" in message and "promises [1, 1]" in message

"""Property-based fuzzing of what reads untrusted bytes: the /v1 row and record decoders,
the /v2 codec (JSON and binary, BYTES included), the CSV upload parser and the ONNX upload
checks. Whatever arrives, the answer is a value or a
4xx error, never another exception (which the gateway would answer 500)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from app.contracts.enums import Task
from app.contracts.signature import TensorSpec
from app.core.config import Settings
from app.core.errors import KilnError
from app.datasets.parsing import parse_csv
from app.onnx_graphs.checks import declared_signature, decode_model, refuse_external_data
from app.serving.oip import decode
from app.serving.predict import parse_body, parse_rows
from app.serving.records import parse_records
from tests.api.test_model_upload import linear_onnx, upload
from tests.conftest import register

FUZZ = fuzz_settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)
numbers = st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False)
rows = st.lists(st.lists(numbers | json_values, min_size=3, max_size=5), max_size=4)
dims = st.integers(-2, 6) | st.integers(0, 2**70) | st.just(4611686018427387904)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "x", ""]) | json_values,
        "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "FP16", "nope"]),
        "shape": st.lists(dims, max_size=4) | json_values,
    },
    optional={
        "data": st.lists(numbers, max_size=12) | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "x"]),
            st.integers(-4, 64) | json_values,
            max_size=2,
        )
        | json_values,
    },
)
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={
        "outputs": st.lists(
            st.dictionaries(st.sampled_from(["name", "parameters"]), json_values, max_size=2),
            max_size=2,
        )
        | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_output"]), json_values)
        | json_values,
        "id": json_values,
    },
)


def _to_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"inputs": rows}), json_values))
def test_v1_row_decoder_answers_rows_or_4xx(payload: Any) -> None:
    try:
        parsed = parse_rows(parse_body(_to_json(payload)), n_features=4, max_rows=3)
    except KilnError as error:
        assert 400 <= error.status_code < 500
        return
    assert parsed.dtype == np.float32 and parsed.ndim == 2 and parsed.shape[1] == 4
    assert np.isfinite(parsed).all()


@FUZZ
@given(
    requests,
    st.binary(max_size=40),
    st.none() | st.just("exact") | st.text(max_size=6) | st.integers(-3, 400).map(str),
)
def test_v2_decoder_answers_tensors_or_400(
    payload: Any, tail: bytes, header_length: str | None
) -> None:
    head = _to_json(payload)
    if header_length == "exact":
        header_length = str(len(head))
    try:
        decoded = decode(
            head + tail if header_length is not None else head, header_length, max_elements=64
        )
    except KilnError as error:
        assert error.status_code == 400
        return
    for array in decoded.inputs.values():
        assert array.size <= 64


@FUZZ
@given(st.data())
def test_onnx_checks_answer_a_signature_or_422(data: st.DataObject) -> None:
    model = linear_onnx(n_in=data.draw(st.integers(1, 6)), n_out=data.draw(st.integers(1, 4)))
    dim = model.graph.input[0].type.tensor_type.shape.dim[1]
    dim.dim_value = data.draw(st.integers(0, 2**62))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = data.draw(st.integers(0, 2**62))
    raw = bytearray(model.SerializeToString())
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        parsed = decode_model(bytes(raw))
        refuse_external_data(parsed)
        declared = declared_signature(parsed)
    except KilnError as error:
        assert error.status_code == 422
        return
    assert declared.width <= 1000 and np.prod(declared.row_shape) <= 1_000_000


@fuzz_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=requests, rows_payload=rows)
def test_inference_routes_never_answer_5xx(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    payload: Any,
    rows_payload: Any,
) -> None:
    if client.get("/v1/models/flowers", headers=admin).status_code == 404:
        register(settings, classifier_onnx, labels=["a", "b", "c"])
    for path, body in (
        ("/v2/models/flowers/infer", payload),
        ("/v1/models/flowers/predict", {"inputs": rows_payload}),
    ):
        response = client.post(
            path,
            headers=admin,
            content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            if _orjson_ok(body)
            else _to_json(body),
        )
        assert response.status_code < 500, (path, body, response.text)


def _orjson_ok(body: Any) -> bool:
    try:
        orjson.dumps(body)
    except TypeError:
        return False
    return True


@fuzz_settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cut=st.floats(0.2, 1.0),
)
def test_onnx_upload_never_answers_5xx(
    client: TestClient, admin: dict, flips: list, cut: float
) -> None:
    raw = bytearray(linear_onnx().SerializeToString())
    for position, value in flips:
        raw[position % len(raw)] = value
    sent = bytes(raw[: max(1, int(len(raw) * cut))])
    status, body = upload(client, admin, sent)
    assert status in (201, 409, 422), body
    if status == 201:
        onnx.checker.check_model(onnx.load_model_from_string(sent))


RECORD_COLUMNS = (
    TensorSpec(
        name="island",
        datatype="BYTES",
        shape=[-1, 1],
        kind="categorical",
        categories=["Biscoe", "TRUE"],
        allows_missing=True,
    ),
    TensorSpec(name="length", datatype="FP32", shape=[-1, 1], kind="numeric", allows_missing=True),
    TensorSpec(name="seen", datatype="BYTES", shape=[-1, 1], kind="datetime", allows_missing=True),
    TensorSpec(
        name="id",
        datatype="BYTES",
        shape=[-1, 1],
        kind="ignored",
        allows_missing=True,
        required=False,
    ),
)
records = st.lists(
    st.dictionaries(
        st.sampled_from(["island", "length", "seen", "id", "x"]), scalars | json_values, max_size=4
    )
    | st.lists(numbers | json_values, max_size=4)
    | json_values,
    max_size=4,
)


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"inputs": records}), json_values))
def test_v1_record_decoder_answers_feeds_or_4xx(payload: Any) -> None:
    try:
        feeds = parse_records(parse_body(_to_json(payload)), RECORD_COLUMNS, max_rows=3)
    except KilnError as error:
        assert 400 <= error.status_code < 500
        return
    assert set(feeds) == {"island", "length", "seen"}
    assert feeds["length"].dtype == np.float32 and not np.isinf(feeds["length"]).any()
    assert all(isinstance(value, str) for value in feeds["island"].ravel())


cells = st.sampled_from(
    [
        "",
        "NA",
        "1",
        "2.5",
        "-3e2",
        "inf",
        "x",
        "Biscoe",
        "2024-01-31",
        "2024-13-99T25:61",
        " 7 ",
        '"a,b"',
        "\u00e9",
        "?",
    ]
)


@FUZZ
@given(
    st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=30),
    st.sampled_from([None, "classification", "regression"]),
    st.binary(max_size=12),
)
def test_csv_upload_parser_answers_a_dataset_or_4xx(
    tmp_path_factory: Any, rows: list[list[str]], task: str | None, noise: bytes
) -> None:
    width = max(len(row) for row in rows)
    header = ",".join([*(f"c{i}" for i in range(width - 1)), "label"]) if width > 1 else "label"
    body = "\n".join([header, *(",".join(row) for row in rows)]).encode() + noise
    path = tmp_path_factory.mktemp("fuzz") / "table.csv"
    path.write_bytes(body)
    try:
        parsed = parse_csv(path, target="label", task=Task(task) if task else None)
    except KilnError as error:
        assert 400 <= error.status_code < 500
        return
    assert parsed.features.dtype == np.float32 and np.isfinite(parsed.features).all()
    assert len(parsed.features) == len(parsed.target) >= 10


def _layer_graph() -> onnx.ModelProto:
    from tests.training.test_from_onnx import mlp_onnx

    return onnx.load_model_from_string(mlp_onnx())


LAYER_GRAPH = _layer_graph()
OPS = [
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Relu",
    "Softmax",
    "Identity",
    "Reshape",
    "Conv",
    "MaxPool",
    "BatchNormalization",
    "Flatten",
    "Cos",
]


@FUZZ
@given(st.data())
def test_the_layer_reader_answers_layers_or_a_reason(data: st.DataObject) -> None:
    """What an upload's graph is read as, at upload time in the gateway: layers, or
    UnsupportedGraph (recorded as the reason), whatever the nodes, inputs, attributes and
    constants say; never another exception."""
    from app.onnx_graphs.layers import UnsupportedGraph, read_layers

    model = onnx.ModelProto()
    model.CopyFrom(LAYER_GRAPH)
    nodes, names = model.graph.node, [t.name for t in model.graph.initializer]
    for _ in range(data.draw(st.integers(1, 4))):
        node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        change = data.draw(
            st.sampled_from(
                ["op", "drop input", "swap input", "attribute", "self loop", "drop constant"]
            )
        )
        if change == "op":
            node.op_type = data.draw(st.sampled_from(OPS))
        elif change == "drop input" and node.input:
            del node.input[data.draw(st.integers(0, len(node.input) - 1))]
        elif change == "swap input" and node.input:
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(
                st.sampled_from([*names, "nowhere", node.output[0]])
            )
        elif change == "attribute":
            node.attribute.append(
                onnx.helper.make_attribute(
                    data.draw(st.sampled_from(["transB", "alpha", "pads", "kernel_shape"])),
                    data.draw(st.sampled_from([0, 2, 1.5, [0, 0, 1, 1], [3, 3]])),
                )
            )
        elif change == "self loop" and node.input:
            node.input[0] = node.output[0]
        elif change == "drop constant" and len(model.graph.initializer):
            del model.graph.initializer[data.draw(st.integers(0, len(model.graph.initializer) - 1))]
    try:
        plan = read_layers(model, data.draw(st.sampled_from([[6], [1, 2, 3], []])))
    except UnsupportedGraph as refused:
        assert refused.status_code == 422 and refused.message
        return
    assert plan.dense and plan.architecture is not None

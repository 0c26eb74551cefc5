"""Hostile ONNX uploads: external data hidden anywhere in the model, declared sizes meant to
make the gateway allocate, graphs that fail or run away only when executed. Each is refused
with a 422 that reveals nothing, and what was stored before keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.core.config import Settings
from app.main import create_app
from tests.api.test_model_upload import linear_onnx, upload
from tests.conftest import make_settings
from tests.security.runaway_graphs import stalls_always

SECRET = b"kiln_THIS-IS-THE-SECRET-0123456789"


def _external(name: str, location: str = "secret.txt") -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.INT64, dims=[len(SECRET) // 8])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", str(len(SECRET) // 8 * 8))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _model(
    nodes: list[onnx.NodeProto],
    *,
    functions: list[onnx.FunctionProto] | None = None,
    inputs: list[int | str] | None = None,
    out_width: int = 1,
    initializers: list[TensorProto] | None = None,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs or ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_width])],
        initializers or [],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("kiln.evil", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions or [])
    model.ir_version = 9
    return model.SerializeToString()


def _reshape_by(shape_name: str) -> list[onnx.NodeProto]:
    """y = ReduceSum(Reshape(x, shape)): the audit's way of echoing a tensor in an error."""
    return [
        helper.make_node("Reshape", ["x", shape_name], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["y"], keepdims=1),
    ]


def function_external() -> bytes:
    """The audit's exploit: a Constant inside a local function reads a file next to the
    server, and a Reshape by it would echo its bytes."""
    constant = helper.make_node("Constant", [], ["shape"], value=_external("leak"))
    function = helper.make_function(
        "kiln.evil", "Leak", [], ["shape"], [constant], [helper.make_opsetid("", 17)]
    )
    return _model(
        [helper.make_node("Leak", [], ["shape"], domain="kiln.evil"), *_reshape_by("shape")],
        functions=[function],
    )


def sparse_external() -> bytes:
    values = _external("values")
    indices = helper.make_tensor("indices", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [4])
    return _model(
        [helper.make_node("Constant", [], ["shape"], sparse_value=sparse), *_reshape_by("shape")]
    )


def subgraph_external() -> bytes:
    """External data two graphs deep: the else-branch of an If."""
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["s"], value=_external("deep"))],
        "branch",
        [],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [None])],
    )
    condition = numpy_helper.from_array(np.array(True), "cond")
    if_node = helper.make_node("If", ["cond"], ["shape"], then_branch=branch, else_branch=branch)
    return _model([if_node, *_reshape_by("shape")], initializers=[condition])


def _weights(rows: int, columns: int) -> TensorProto:
    return numpy_helper.from_array(np.ones((rows, columns), np.float32), "W")


def label_bomb() -> bytes:
    """95 bytes that declare three million output columns (the weights are never there)."""
    return _model([helper.make_node("Identity", ["x"], ["y"])], out_width=3_000_000)


def input_bomb() -> bytes:
    return _model(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1)], inputs=["batch", 2**40]
    )


def fails_on_random_rows() -> bytes:
    """Gathers by an index computed from the input: fine for zeros, out of range otherwise."""
    table = numpy_helper.from_array(np.ones((2, 1), np.float32), "table")
    scale = numpy_helper.from_array(np.array(1000.0, np.float32), "scale")
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["big"]),
        helper.make_node("Cast", ["big"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["g"]),  # [batch, 3, 1]
        helper.make_node("ReduceSum", ["g"], ["y2"], keepdims=0),  # sums everything
        helper.make_node("Reshape", ["y2", "one_one"], ["y1"]),
        helper.make_node("Mul", ["x_first", "zero"], ["zeroed"]),
        helper.make_node("Add", ["zeroed", "y1"], ["y"]),
    ]
    first = [helper.make_node("Slice", ["x", "start", "stop", "axis"], ["x_first"])]
    constants = [
        numpy_helper.from_array(np.array(value, np.int64), name)
        for name, value in (("one_one", [1, 1]), ("start", [0]), ("stop", [1]), ("axis", [1]))
    ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    return _model(first + nodes, initializers=[table, scale, zero, *constants])


def memory_bomb() -> bytes:
    """Allocates 40 GB from a shape it computes, then sums it to one value per row."""
    shape = numpy_helper.from_array(np.array([100_000, 100_000], np.int64), "shape")
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["huge"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["x", "axis"], ["rowsum"], keepdims=1),
        helper.make_node("Mul", ["rowsum", "total"], ["y"]),
    ]
    axis = numpy_helper.from_array(np.array([1], np.int64), "axis")
    return _model(nodes, initializers=[shape, axis])


HOSTILE = [
    (
        "external data in a local function",
        function_external,
        "references external data (tensor 'leak')",
    ),
    (
        "external data in a sparse constant",
        sparse_external,
        "references external data (tensor 'values')",
    ),
    (
        "external data in a nested graph",
        subgraph_external,
        "references external data (tensor 'deep')",
    ),
    ("a declared label bomb", label_bomb, "has 3000000 columns; at most 1000 classes"),
    (
        "a declared input of 2^40 values",
        input_bomb,
        f"{2**40} values per row; at most 1000000 are supported",
    ),
    (
        "a graph that fails only on random rows",
        fails_on_random_rows,
        "model fails on 4 random input rows",
    ),
    (
        "an output wider than declared",
        lambda: _model([helper.make_node("Identity", ["x"], ["y"])]),
        "declares output shape [batch, 1] but gave [1, 3] for one row, [4, 3] for 4",
    ),
    ("a memory bomb", memory_bomb, "KILN_PROBE_MEMORY_MB"),
    ("a time bomb", stalls_always, "within 1 s (KILN_UPLOAD_RUN_TIMEOUT_S"),
]


@pytest.fixture
def guarded(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A gateway with tight probe limits, run from a directory that holds a secret."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    tight = make_settings(
        settings.data_dir,
        settings.database_url,
        probe_timeout_s=5,
        probe_memory_mb=1024,
        upload_run_timeout_s=1,
    )
    with TestClient(create_app(tight, run_reaper=False)) as client:
        yield client


@pytest.mark.parametrize(
    ("make", "message"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_hostile_model_is_refused_revealing_nothing(
    guarded: TestClient, admin: dict, make, message: str
) -> None:
    assert upload(guarded, admin, linear_onnx().SerializeToString(), name="kept")[0] == 201
    status, body = upload(guarded, admin, make(), name="hostile")
    assert status == 422, body
    assert message in body["detail"]
    for leaked in (
        SECRET.decode(),
        "secret.txt",
        str(int.from_bytes(SECRET[:8], "little")),
        "onnxruntime_pybind11",
        "Status Message",
    ):
        assert leaked not in body["detail"]
    assert guarded.get("/v1/models/hostile", headers=admin).status_code == 404
    assert guarded.post(
        "/v1/models/kept/predict", headers=admin, json={"inputs": [[1, 1, 1]]}
    ).json()["predictions"] == [3.0]

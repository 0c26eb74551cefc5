"""Classifying uploaded ONNX graphs as bounded (cost provably linear in the rows: they may
run in the gateway) or sandboxed: every allowed operator, the value-driven shapes each
shape-like input allows, control flow, foreign domains, quadratic intermediates, the
graphs ModelKiln's exporters write, and the hostile uploads of ``tests.fixtures``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from app.onnx_graphs.classify import (
    ALLOWED_OPS,
    BOUNDED_REASON,
    ROWS_APART,
    GraphClass,
    classify,
)
from app.registry.upload import ProbeLimits, check_onnx
from tests.fixtures.hostile_graphs import CASES as HOSTILE_CASES
from tests.fixtures.hostile_graphs import HOSTILE
from tests.onnx_graphs import ml_graphs, op_graphs
from tests.onnx_graphs.graph import ML, WIDTH, Graph
from tests.onnx_graphs.value_graphs import BY_VALUES, SHAPED

ALLOWED = sorted((domain, op) for domain, ops in ALLOWED_OPS.items() for op in ops)
CASES = {**op_graphs.CASES, **ml_graphs.CASES}
# Inputs that size an operator's output (a schema's input names): an allowed operator
# taking one must have a graph in BY_VALUES that computes it from the input's values.
SHAPE_INPUTS = {"shape", "repeats", "pads", "axes", "sizes", "scales", "split", "starts"}
SHAPE_INPUTS |= {"ends", "limit", "depth", "k"}
LIMITS = ProbeLimits(threads=1, memory_mb=2048, timeout_s=60.0, run_timeout_s=5.0)


def _ids(key: tuple[str, str]) -> str:
    return f"{key[0] or 'ai.onnx'}:{key[1]}"


def _shape_like(domain: str, op: str) -> bool:
    if op == "ConstantOfShape":
        return True
    schema = onnx.defs.get_schema(op, onnx.defs.onnx_opset_version(), domain)
    return any(formal.name in SHAPE_INPUTS for formal in schema.inputs[1:])


def _sandboxed(model: onnx.ModelProto, *words: str) -> GraphClass:
    judged = classify(model)
    assert not judged.bounded and judged.label == "sandboxed", judged
    for word in words:
        assert word in judged.reason, judged.reason
    return judged


def test_the_table_covers_every_allowed_operator_and_nothing_else() -> None:
    assert sorted(CASES) == ALLOWED, "every allowed operator needs a graph in CASES"
    shape_like = {key for key in ALLOWED if key[0] == "" and _shape_like(*key)}
    assert shape_like <= set(BY_VALUES), "and one sized by values in BY_VALUES"
    assert set(BY_VALUES) <= set(ALLOWED)


@pytest.mark.parametrize("key", ALLOWED, ids=_ids)
def test_each_allowed_operator_with_static_shapes_is_bounded(key: tuple[str, str]) -> None:
    case = CASES.get(key)
    assert case is not None, f"no graph in tests/onnx_graphs/*_graphs.py uses {key}"
    model = case.build()
    onnx.checker.check_model(model, full_check=True)
    assert any((node.domain, node.op_type) == key for node in model.graph.node)
    judged = classify(model)
    assert judged.bounded and judged.reason.startswith(BOUNDED_REASON + "; ")
    assert judged.label == "bounded"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    assert session.run(["y"], {"x": rows})[0].shape == (3, WIDTH)


@pytest.mark.parametrize("key", sorted(BY_VALUES), ids=_ids)
def test_a_shape_input_computed_from_values_is_sandboxed(key: tuple[str, str]) -> None:
    model = BY_VALUES[key].build()
    _sandboxed(model, f"'{SHAPED}'", key[1])


def _control_flow(op: str) -> onnx.ModelProto:
    """y = x @ W, next to an ``op`` node whose body passes a value through."""
    g = Graph()
    body_in = [helper.make_tensor_value_info("v", TensorProto.FLOAT, [4])]
    body_out = [helper.make_tensor_value_info("w", TensorProto.FLOAT, [4])]
    identity = [helper.make_node("Identity", ["v"], ["w"])]
    row = g.op("Gather", "x", g.const(0, np.int64), axis=0)
    if op == "If":
        body = helper.make_graph(
            [helper.make_node("Identity", [row], ["w"])], "branch", [], body_out
        )
        first = g.op("Gather", row, g.const(0, np.int64), axis=0)
        flag = g.op("Greater", first, g.const(0.0))
        g.op("If", flag, then_branch=body, else_branch=body)
    elif op == "Loop":
        trip = [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            *body_in,
        ]
        out = [helper.make_tensor_value_info("c2", TensorProto.BOOL, []), *body_out]
        body = helper.make_graph(
            [*identity, helper.make_node("Identity", ["c"], ["c2"])], "trip", trip, out
        )
        g.op("Loop", g.const(3, np.int64), "", row, body=body)
    else:
        body = helper.make_graph(identity, "scan", body_in, body_out)
        g.op("Scan", g.reshape("x", -1, 4), num_scan_inputs=1, body=body)
    return g.model("x", 4)


@pytest.mark.parametrize("op", ["If", "Loop", "Scan"])
def test_a_subgraph_is_sandboxed(op: str) -> None:
    model = _control_flow(op)
    onnx.checker.check_model(model, full_check=True)
    _sandboxed(model, op, "runs a subgraph")


def test_an_operator_whose_output_size_depends_on_values_is_sandboxed() -> None:
    g = Graph()
    found = g.op("NonZero", "x", out="where")
    model = g.model(g.op("Add", "x", g.floats(g.op("ReduceSum", found, keepdims=0))), 4)
    _sandboxed(model, "NonZero", "not an operator of known cost")


def test_an_unknown_domain_and_a_local_function_are_sandboxed() -> None:
    g = Graph()
    model = g.model(g.op("Leak", "x", domain="kiln.evil"), 4)
    model.opset_import.append(helper.make_opsetid("kiln.evil", 1))
    _sandboxed(model, "Leak", "'kiln.evil'")
    function = helper.make_function(
        "kiln.evil",
        "Leak",
        ["a"],
        ["b"],
        [helper.make_node("Relu", ["a"], ["b"])],
        [helper.make_opsetid("", 18)],
    )
    model.functions.append(function)
    _sandboxed(model, "local functions", "'Leak'")


def test_an_n_by_n_intermediate_is_sandboxed() -> None:
    g = Graph()
    gram = g.op("MatMul", "x", g.op("Transpose", "x", perm=[1, 0]), out="gram")
    model = g.model(g.op("ReduceSum", gram, g.ints(1), keepdims=0), 1)
    _sandboxed(model, "'gram'", "MatMul", "batch dimension 2 times")
    g = Graph()  # the same through broadcasting: [batch, 1] + [1, batch]
    column = g.op("Slice", "x", g.ints(0), g.ints(1), g.ints(1))
    square = g.op("Add", column, g.op("Transpose", column, perm=[1, 0]), out="square")
    model = g.model(g.op("ReduceSum", square, g.ints(1), keepdims=1), 1)
    _sandboxed(model, "'square'", "batch dimension 2 times")


def test_torchs_flatten_through_shape_gather_concat_reshape_is_bounded() -> None:
    model = CASES[("", "Shape")].build()
    assert [node.op_type for node in model.graph.node] == [
        *("Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "MatMul"),
    ]
    assert classify(model).bounded


def test_shapes_the_uploader_annotated_are_not_trusted() -> None:
    model = onnx.load_from_string(HOSTILE["constant_of_shape"]())
    big = next(node for node in model.graph.node if node.op_type == "ConstantOfShape")
    claims = [helper.make_tensor_value_info(big.output[0], TensorProto.FLOAT, [1, 1024])]
    for node in model.graph.node:
        if node.op_type == "ReduceSum":
            claims.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, []))
    model.graph.value_info.extend(claims)
    judged = _sandboxed(model, f"'{big.output[0]}'", "ConstantOfShape", "depends on input values")
    assert len(model.graph.value_info) == len(claims)  # classify works on a copy
    assert judged.reason.startswith("the shape of tensor")


def test_an_initializer_declared_as_an_input_has_its_own_shape() -> None:
    g = Graph()
    model = g.model(g.op("Add", "x", g.const(np.ones(4))), 4)
    weight = model.graph.initializer[0]
    lie = helper.make_tensor_value_info(weight.name, TensorProto.FLOAT, ["kiln_batch", 4])
    model.graph.input.append(lie)  # an older file's habit, with a shape that lies
    assert classify(model).bounded


def test_names_in_a_reason_are_cut_short_and_printable() -> None:
    g = Graph()
    g.op("NonZero", "x")
    g.nodes[-1].name = "n\x1b[31m" + "a" * 500
    model = g.model("x", 4)
    reason = _sandboxed(model, "NonZero 'n[31maaa").reason
    assert "a" * 80 not in reason and "\x1b" not in reason and len(reason) < 250


def test_a_graph_whose_output_is_not_one_row_per_input_row_is_sandboxed() -> None:
    g = Graph()
    model = g.model(g.op("ReduceSum", "x", g.ints(0), keepdims=1), 4)
    _sandboxed(model, "output 'y' is not inferred as [batch, width]")


def test_shape_inference_failing_is_sandboxed_with_a_short_reason() -> None:
    g = Graph()
    model = g.model(g.op("MatMul", "x", g.const(np.ones((3, 4)))), 4)  # 4 against 3
    reason = _sandboxed(model, "ONNX shape inference failed").reason
    assert len(reason) < 200


def test_multi_head_attention_folding_heads_into_the_batch_is_bounded() -> None:
    g = Graph()  # [batch, 4] -> [batch * 2, 2] (heads into rows) -> back to [batch, 4]
    heads = g.reshape("x", -1, 2)
    mixed = g.op("Softmax", g.op("MatMul", heads, g.const(np.eye(2))))
    model = g.model(g.reshape(mixed, -1, 4), 4)
    assert classify(model).bounded


@pytest.mark.parametrize("config", ["mlp", "cnn"])
def test_networks_modelkilns_exporter_writes_are_bounded(config: str, tmp_path: Path) -> None:
    from app.contracts.networks import CNNConfig, MLPConfig
    from app.training.export import export_onnx
    from app.training.models import Network

    network = Network(
        MLPConfig(6, 3, (16, 8), "gelu", 0.1, batch_norm=True)
        if config == "mlp"
        else CNNConfig((1, 8, 8), 3, (4, 8), batch_norm=True),
        classification=True,
        seed=0,
    )
    path = tmp_path / "net.onnx"
    export_onnx(network, path)
    judged = classify(onnx.load(str(path)))
    assert judged.bounded and judged.rows_independent, judged.reason


@pytest.mark.parametrize("outputs", [1, 3])
def test_a_lightgbm_graph_is_bounded(outputs: int) -> None:
    from app.training.table_models import FitOptions, TableData, fit_table_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32) + (x[:, 1] > 0.5) if outputs > 1 else x[:, 0] * 3
    data = TableData(x[:150], y[:150], x[150:], y[150:])
    model = fit_table_model("gbdt", {}, data, outputs, FitOptions(rounds=5)).to_onnx()
    assert any(node.domain == ML for node in model.graph.node)
    judged = classify(model)
    assert judged.bounded and judged.rows_independent, judged.reason


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_graph_is_sandboxed(name: str) -> None:
    model = onnx.load_from_string(HOSTILE[name]())
    onnx.checker.check_model(model, full_check=True)
    judged = _sandboxed(model)
    expected = {"quadratic": "batch dimension 2 times", "loop": "runs a subgraph"}
    assert expected.get(name, "depends on input values") in judged.reason


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_graph_passes_the_probe_as_sandboxed(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(HOSTILE[name]())
    checked = check_onnx(path, labels=None, task=None, limits=LIMITS)
    assert checked.signature.width == 2 and checked.task == "classification"
    assert checked.config.graph_class == "sandboxed"
    assert checked.config.graph_class_reason == classify(onnx.load(str(path))).reason
    trigger = HOSTILE_CASES[name].trigger(rows=3)
    assert len(trigger) >= 3 and all(len(row) == 4 for row in trigger)


def test_the_probe_records_a_bounded_graph_and_its_seconds_per_row(tmp_path: Path) -> None:
    g = Graph()
    hidden = g.op("Relu", g.op("Gemm", "x", g.const(np.ones((4, 64))), g.const(np.zeros(64))))
    path = tmp_path / "mlp.onnx"
    path.write_bytes(g.model(hidden, 64).SerializeToString())
    config = check_onnx(path, labels=None, task=None, limits=LIMITS).config
    assert (config.graph_class, config.rows_independent) == ("bounded", True)
    assert config.graph_class_reason == BOUNDED_REASON + ROWS_APART
    assert config.seconds_per_row is not None and 0 < config.seconds_per_row < 0.1

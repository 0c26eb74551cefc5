"""What each method promises beyond the contract: structured pruning removes whole units
exactly, unstructured pruning reaches its sparsity, students are smaller, quantized graphs
hold int8 kernels, fp16 halves the weights, and selected columns are gathered in-graph."""

from __future__ import annotations

import gzip

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from torch import nn

from app.compression.base import Candidate, CompressionData
from app.compression.base import get_compressor as compressor_for
from app.compression.methods.surgery import shrink, top_units
from app.training.models import Network
from tests.compression.test_contract import method_step, outputs

Fixture = tuple[Candidate, CompressionData]


def linear(network: Network, position: int) -> nn.Linear | nn.Conv2d:
    """The weight layer at ``position`` of the network's body (dense or convolution)."""
    layer = network.body[position]
    assert isinstance(layer, nn.Linear | nn.Conv2d)
    return layer


def op_types(candidate: Candidate) -> set[str]:
    return {node.op_type for node in onnx.load_model_from_string(candidate.onnx).graph.node}


def with_dead_units(network: Network, dead: dict[int, list[int]]) -> Network:
    """A copy whose listed units (per body position) get zero incoming weights and bias."""
    copy = Network(network.config, network.classification)
    copy.load_state_dict(network.state_dict())
    with torch.no_grad():
        for position, units in dead.items():
            layer = linear(copy, position)
            assert layer.bias is not None
            layer.weight[units] = 0
            layer.bias[units] = 0
    return copy.eval()


def test_structured_surgery_removes_units_without_changing_outputs(classification: Fixture) -> None:
    parent, data = classification
    assert parent.network is not None
    dead = with_dead_units(parent.network, {0: list(range(0, 48, 2)), 2: [1, 5, 7]})
    importance = [linear(dead, 0).weight.abs().sum(dim=1), linear(dead, 2).weight.abs().sum(dim=1)]
    kept = [top_units(importance[0], 0.5), top_units(importance[1], 3 / 24)]
    smaller = shrink(dead, kept)
    assert smaller.config.hidden == (24, 21)  # type: ignore[union-attr]
    rows = torch.from_numpy(data.x_test)
    with torch.no_grad():
        assert torch.allclose(smaller.predict(rows), dead.predict(rows), atol=1e-5)


def test_structured_surgery_on_conv_channels(images: Fixture) -> None:
    parent, data = images
    assert parent.network is not None
    dead = with_dead_units(parent.network, {1: [0, 3, 5], 4: [2, 4, 6, 8]})
    kept = [np.array([1, 2, 4, 6, 7]), np.array([0, 1, 3, 5, 7, 9, 10, 11]), np.arange(32)]
    smaller = shrink(dead, kept)
    assert smaller.config.channels == (5, 8)  # type: ignore[union-attr]
    rows = torch.from_numpy(data.x_test)
    with torch.no_grad():
        assert torch.allclose(smaller.predict(rows), dead.predict(rows), atol=1e-5)


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_structured_pruning_makes_a_smaller_dense_network(
    classification: Fixture, importance: str
) -> None:
    parent, data = classification
    result = compressor_for(
        method_step("prune_structured", ratio=0.75, importance=importance, fine_tune_epochs=2)
    ).apply(parent, data, lambda: None)
    assert result.network is not None
    assert result.network.config.hidden == (12, 6)  # type: ignore[union-attr]
    assert result.report["removed_units"] == [36, 18]
    assert len(result.onnx) < len(parent.onnx) / 2


def test_unstructured_pruning_reaches_its_sparsity_and_says_what_it_buys(
    classification: Fixture,
) -> None:
    parent, data = classification
    result = compressor_for(
        method_step("prune_unstructured", sparsity=0.9, rounds=2, fine_tune_epochs=2)
    ).apply(parent, data, lambda: None)
    assert result.report["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert result.report["nonzero_params"] < parent.params
    assert "no faster" in result.report["note"]
    assert abs(len(result.onnx) - len(parent.onnx)) < 0.02 * len(parent.onnx)
    assert len(gzip.compress(result.onnx)) < 0.5 * len(gzip.compress(parent.onnx))


def test_distilled_students_are_narrower_or_shallower(classification: Fixture) -> None:
    parent, data = classification
    narrow = compressor_for(method_step("distill", epochs=3, width_factor=0.25)).apply(
        parent, data, lambda: None
    )
    shallow = compressor_for(method_step("distill", epochs=3, depth=1)).apply(
        parent, data, lambda: None
    )
    chosen = compressor_for(method_step("distill", epochs=3, student_hidden=[5])).apply(
        parent, data, lambda: None
    )
    assert narrow.network and narrow.network.config.hidden == (12, 6)  # type: ignore[union-attr]
    assert shallow.network and shallow.network.config.hidden == (24,)  # type: ignore[union-attr]
    assert chosen.network and chosen.network.config.hidden == (5,)  # type: ignore[union-attr]
    assert all(
        c.params is not None and parent.params is not None and c.params < parent.params
        for c in (narrow, shallow, chosen)
    )


def test_a_graph_only_teacher_gets_a_searched_student(classification: Fixture) -> None:
    parent, data = classification
    teacher = Candidate(
        onnx=parent.onnx,
        input_name="input",
        output_name="output",
        n_features=10,
        params=parent.params,
    )
    student = compressor_for(method_step("distill", epochs=4)).apply(teacher, data, lambda: None)
    assert student.report["students_tried"] == 4
    assert student.network is not None


def test_quantized_graphs_hold_int8_kernels(classification: Fixture) -> None:
    parent, data = classification
    dynamic = compressor_for(method_step("quantize_dynamic")).apply(parent, data, lambda: None)
    static = compressor_for(method_step("quantize_static")).apply(parent, data, lambda: None)
    assert "MatMulInteger" in op_types(dynamic) or "DynamicQuantizeLinear" in op_types(dynamic)
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(static)
    assert dynamic.network is None and static.network is None
    weights = [
        tensor
        for tensor in onnx.load_model_from_string(static.onnx).graph.initializer
        if tensor.data_type == TensorProto.INT8
    ]
    assert weights and static.report["weights"] == "int8 per channel"


def test_reduce_range_follows_the_setting(classification: Fixture) -> None:
    parent, data = classification
    result = compressor_for(method_step("quantize_dynamic", reduce_range="on")).apply(
        parent, data, lambda: None
    )
    assert result.report["reduce_range"] is True
    assert outputs(result, data.x_test).shape == outputs(parent, data.x_test).shape


def test_fp16_halves_the_weights_and_keeps_fp32_inputs(classification: Fixture) -> None:
    parent, data = classification
    result = compressor_for(method_step("fp16")).apply(parent, data, lambda: None)
    model = onnx.load_model_from_string(result.onnx)
    assert any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert len(result.onnx) < 0.7 * len(parent.onnx)
    np.testing.assert_allclose(
        outputs(result, data.x_test), outputs(parent, data.x_test), atol=5e-3
    )


@pytest.mark.parametrize("by", ["l1", "permutation", "variance"])
def test_selected_columns_are_gathered_inside_the_graph(classification: Fixture, by: str) -> None:
    parent, data = classification
    result = compressor_for(
        method_step("select_features", by=by, keep=0.5, fine_tune_epochs=2)
    ).apply(parent, data, lambda: None)
    assert "Gather" in op_types(result)
    assert result.columns is not None and len(result.columns) == 5
    assert result.report["columns"] == result.columns.tolist()
    if by == "variance":  # the two constant columns go first
        assert not {8, 9} & set(result.columns.tolist())
    session_rows = data.x_test.copy()
    session_rows[:, [c for c in range(10) if c not in result.columns]] = 123.0
    np.testing.assert_allclose(
        outputs(result, session_rows), outputs(result, data.x_test), atol=1e-6
    )


def test_a_chain_keeps_selected_columns_through_pruning(classification: Fixture) -> None:
    parent, data = classification
    selected = compressor_for(method_step("select_features", keep=0.5)).apply(
        parent, data, lambda: None
    )
    pruned = compressor_for(method_step("prune_structured")).apply(selected, data, lambda: None)
    quantized = compressor_for(method_step("quantize_static")).apply(pruned, data, lambda: None)
    assert pruned.columns is not None and selected.columns is not None
    assert pruned.columns.tolist() == selected.columns.tolist()
    assert "Gather" in op_types(quantized)
    assert outputs(quantized, data.x_test).shape == (len(data.x_test), 3)

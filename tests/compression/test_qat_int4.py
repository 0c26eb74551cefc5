"""What quantization-aware training (``qat``) and weight-only 4-bit (``int4``) promise beyond
the contract: qat serves an int8 QDQ graph that onnxruntime runs as integer kernels, with
its learnt clips recorded; PACT's clip learns through its straight-through gradient; int4
files hold MatMulNBits and are smaller than fp32; a graph int4 cannot take is refused
with why; bad settings are a 422 naming the field."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.compression.base import Candidate, CompressionData, CompressionError
from app.compression.base import get_compressor as compressor_for
from app.compression.methods.int4 import BLOCK_SIZES
from app.compression.methods.qat import PACT, UINT8_STEPS, FakeQuantWeight
from app.compression.spec import CompressionSpec
from tests.compression.test_contract import method_step, outputs

Fixture = tuple[Candidate, CompressionData]


def op_types(onnx_bytes: bytes) -> list[str]:
    return [node.op_type for node in onnx.load_model_from_string(onnx_bytes).graph.node]


def kernels(onnx_bytes: bytes) -> set[str]:
    """The operators onnxruntime actually runs, after its graph optimisations."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        return set(op_types(Path(options.optimized_model_filepath).read_bytes()))


def test_pact_clips_on_a_uint8_grid_and_learns_its_alpha_straight_through() -> None:
    clip = PACT(start=2.0)
    x = torch.tensor([-1.0, 0.3, 1.0, 2.5, 4.0], requires_grad=True)
    y = clip(x)
    step = 2.0 / UINT8_STEPS
    assert torch.allclose(y, torch.round(torch.clamp(x, 0, 2.0) / step) * step)
    y.sum().backward()
    assert clip.factor.grad is not None
    # d/d alpha is 1 for the two values at or above the clip (alpha = 2 x factor) plus
    # the small L2 pull; rounding passes gradients to x inside the clip only.
    assert clip.factor.grad.item() == pytest.approx(2 * 2.0, rel=0.01)
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_fake_quantized_weights_sit_on_the_per_channel_int8_grid() -> None:
    weight = torch.randn(5, 7)
    grid = FakeQuantWeight(127)(weight)
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    codes = grid / scale
    assert torch.allclose(codes, torch.round(codes), atol=1e-4)
    assert torch.allclose(grid.abs().amax(dim=1), weight.abs().amax(dim=1))


@pytest.mark.parametrize("network", ["classification", "images"])
def test_qat_serves_an_int8_qdq_graph_run_by_integer_kernels(
    network: str, request: pytest.FixtureRequest
) -> None:
    parent, data = request.getfixturevalue(network)
    result = compressor_for(method_step("qat", fine_tune_epochs=2)).apply(
        parent, data, lambda: None
    )
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(op_types(result.onnx))
    model = onnx.load_model_from_string(result.onnx)
    assert any(tensor.data_type == TensorProto.INT8 for tensor in model.graph.initializer)
    integer = {"QGemm", "QLinearConv", "QLinearMatMul"}
    assert integer & kernels(result.onnx), kernels(result.onnx)
    assert result.network is None and result.report["bits"] == 8
    assert len(result.report["alphas"]) == (2 if network == "classification" else 3)
    assert all(alpha > 0 for alpha in result.report["alphas"])
    agree = np.mean(
        outputs(result, data.x_test).argmax(axis=1) == outputs(parent, data.x_test).argmax(axis=1)
    )
    assert agree >= 0.8


def test_qat_after_structured_pruning(classification: Fixture) -> None:
    parent, data = classification
    pruned = compressor_for(method_step("prune_structured", fine_tune_epochs=2)).apply(
        parent, data, lambda: None
    )
    result = compressor_for(method_step("qat", fine_tune_epochs=2)).apply(
        pruned, data, lambda: None
    )
    assert "QuantizeLinear" in op_types(result.onnx)
    assert len(result.onnx) < len(pruned.onnx)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_int4_holds_matmulnbits_and_a_smaller_file(
    task: str, request: pytest.FixtureRequest
) -> None:
    parent, data = request.getfixturevalue(task)
    result = compressor_for(method_step("int4")).apply(parent, data, lambda: None)
    assert op_types(result.onnx).count("MatMulNBits") == 3
    assert "Gemm" not in op_types(result.onnx)
    assert len(result.onnx) < len(parent.onnx)
    report = result.report
    assert report["bits"] == 4 and report["block_size"] in BLOCK_SIZES
    assert set(report["tried"]) == {str(size) for size in BLOCK_SIZES}
    chosen = report["tried"][str(report["block_size"])]
    assert chosen["bytes"] == len(result.onnx)


def test_int4_takes_the_block_size_it_is_given_and_leaves_convolutions(
    images: Fixture,
) -> None:
    parent, data = images
    result = compressor_for(method_step("int4", block_size=32, symmetric=True)).apply(
        parent, data, lambda: None
    )
    assert result.report["block_size"] == 32 and list(result.report["tried"]) == ["32"]
    assert result.report["fp32_weight_layers"] == {"Conv": 2}
    assert op_types(result.onnx).count("MatMulNBits") == 2
    assert len(result.onnx) < len(parent.onnx)


def _computed_weight_graph() -> bytes:
    """A dense layer whose weight is computed in the graph (not a constant)."""
    weight = numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["w"], ["w_used"]),
            helper.make_node("Gemm", ["input", "w_used"], ["output"], transB=1),
        ],
        "computed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def test_int4_refuses_a_graph_without_a_constant_dense_weight(classification: Fixture) -> None:
    _, data = classification
    candidate = Candidate(
        onnx=_computed_weight_graph(),
        input_name="input",
        output_name="output",
        n_features=4,
        params=12,
    )
    with pytest.raises(CompressionError) as refused:
        compressor_for(method_step("int4")).apply(candidate, data, lambda: None)
    message = str(refused.value)
    assert "MatMulNBits" in message and "constant" in message
    assert "1 Gemm" in message and "not a constant fp32 matrix" in message


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        (["qat", "quantize_static"], "already quantized"),
        (["int4", "qat"], "needs torch weights, but it follows a graph rewrite"),
        (["qat", "int4"], "already quantized"),
    ],
)
def test_chains_that_quantize_twice_are_refused(chain: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompressionSpec.model_validate({"methods": [chain]})
    CompressionSpec.model_validate({"methods": [["prune_structured", "qat"]]})


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"method": "int4", "block_size": 48}, "block_size"),
        ({"method": "int4", "symmetric": "sometimes"}, "symmetric"),
        ({"method": "int4", "compute": "fp8"}, "compute"),
        ({"method": "qat", "fine_tune_epochs": 0}, "fine_tune_epochs"),
        ({"method": "qat", "calibration_rows": 1}, "calibration_rows"),
        ({"method": "qat", "learning_rate": 0}, "learning_rate"),
        ({"method": "qat", "reduce_range": "maybe"}, "reduce_range"),
        ({"method": "qat", "bits": 4}, "bits"),
    ],
)
def test_bad_qat_and_int4_settings_are_422_naming_the_field(
    client: TestClient, admin: dict, step: dict, field: str
) -> None:
    response = client.post(
        "/v1/jobs",
        headers=admin,
        json={
            "kind": "search",
            "dataset_id": 1,
            "model_name": "m",
            "compression": {"methods": [step]},
        },
    )
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0

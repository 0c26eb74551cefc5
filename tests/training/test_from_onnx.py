"""Uploaded ONNX graphs of ordinary layers become trainable networks that reproduce them;
anything else is refused with the operator or the detail named."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from app.contracts.networks import CNNConfig, MLPConfig
from app.onnx_graphs.layers import UnsupportedGraph, read_layers
from app.training.from_onnx import network_from_onnx


class Normalised(nn.Module):
    """What another tool exports: (x - mean) / std in front of the layers."""

    def __init__(self, layers: nn.Module, width: int) -> None:
        super().__init__()
        self.layers = layers
        self.register_buffer("mean", torch.linspace(-1, 1, width))
        self.register_buffer("std", torch.linspace(0.5, 2, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        out: torch.Tensor = self.layers((x - mean) / std)
        return out


def exported(module: nn.Module, width: int) -> bytes:
    module.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.zeros(2, width),),
        buffer,  # type: ignore[arg-type]
        input_names=["input"],
        output_names=["output"],
        opset_version=18,
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        external_data=False,
        verbose=False,
    )
    return buffer.getvalue()


def mlp_onnx(activation: type[nn.Module] = nn.Tanh, softmax: bool = True) -> bytes:
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Linear(6, 12),
        activation(),
        nn.Linear(12, 8),
        activation(),
        nn.Linear(8, 3),
    ]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return exported(Normalised(nn.Sequential(*layers), 6), 6)


def cnn_onnx() -> bytes:
    torch.manual_seed(1)
    return exported(
        nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 2 * 2, 16),
            nn.ReLU(),
            nn.Linear(16, 10),
            nn.Softmax(dim=1),
        ),
        64,
    )


def run_onnx(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    from app.evaluation.sessions import open_session

    return np.asarray(open_session(onnx_bytes, 1).run(None, {"input": rows})[0])


@pytest.mark.parametrize("softmax", [True, False])
def test_an_mlp_with_its_own_normalisation_is_rebuilt_exactly(softmax: bool) -> None:
    graph = mlp_onnx(softmax=softmax)
    plan = read_layers(onnx.load_model_from_string(graph), [6])
    assert isinstance(plan.architecture, MLPConfig)
    assert plan.architecture.hidden == (12, 8) and plan.architecture.activation == "tanh"
    assert plan.input_shift is not None and plan.softmax == softmax
    network = network_from_onnx(graph, [6], classification=True)
    rows = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32) * 3
    with torch.no_grad():
        ours = (network.predict if softmax else network)(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(ours, run_onnx(graph, rows), rtol=1e-4, atol=1e-5)


def test_a_cnn_on_flat_rows_is_rebuilt_exactly() -> None:
    graph = cnn_onnx()
    network = network_from_onnx(graph, [64], classification=True)
    assert isinstance(network.config, CNNConfig)
    assert network.config.channels == (4, 6) and network.config.input_shape == (1, 8, 8)
    rows = np.random.default_rng(4).uniform(0, 16, size=(20, 64)).astype(np.float32)
    with torch.no_grad():
        ours = network.predict(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(ours, run_onnx(graph, rows), rtol=1e-4, atol=1e-5)


def test_training_keeps_an_uploaded_networks_own_scaling() -> None:
    from app.training.train import TrainConfig, TrainData, train

    network = network_from_onnx(mlp_onnx(), [6], classification=True)
    mean = network.input_mean.clone()
    x = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32) + 50  # other stats
    train(
        network,
        TrainData(x[:40], np.arange(40) % 3, x[40:], np.arange(20) % 3),
        TrainConfig(epochs=1, learning_rate=1e-3),
    )
    assert torch.equal(network.input_mean, mean)


def graph_with(op: str) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node(op, ["h"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_an_unsupported_operator_is_named() -> None:
    with pytest.raises(
        UnsupportedGraph, match="operator 'Cos' cannot be turned into a trainable layer"
    ):
        read_layers(graph_with("Cos"), [4])


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (lambda: onnx.load_model_from_string(mlp_onnx(activation=nn.ReLU)), None),
        (lambda: graph_with("Relu"), "an activation follows the output layer"),
    ],
)
def test_layers_that_do_not_make_a_network_are_refused(graph, message) -> None:
    if message is None:
        architecture = read_layers(graph(), [6]).architecture
        assert architecture is not None and architecture.activation == "relu"
        return
    with pytest.raises(UnsupportedGraph, match=message):
        read_layers(graph(), [4])

"""An uploaded ONNX graph of ordinary layers (``app.onnx_graphs.layers``) rebuilt as a trainable
torch ``Network``, its weights copied from the graph's initializers, and checked against the
graph in onnxruntime before anything trains it."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from app.core.errors import BrokenInvariant
from app.onnx_graphs.layers import (
    LayerPlan,
    UnsupportedGraph,
    constants_of,
    input_statistics,
    read_layers,
)
from app.training.models import Network

PARITY_ROWS = 64
PARITY_TOLERANCE = 1e-3


def _tensor(value: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float32, copy=True))


def _copy_weights(network: Network, plan: LayerPlan, constants: dict[str, np.ndarray]) -> None:
    body = list(network.body)
    convs = [layer for layer in body if isinstance(layer, nn.Conv2d)]
    norms = [layer for layer in body if isinstance(layer, nn.BatchNorm2d)]
    linears = [layer for layer in body if isinstance(layer, nn.Linear)]
    with torch.no_grad():
        for block, conv in zip(plan.blocks, convs, strict=True):
            conv.weight.copy_(_tensor(constants[block.conv]))
            conv_bias = constants.get(block.conv_bias or "")
            if conv.bias is None:
                raise BrokenInvariant("conv.bias is None")
            conv.bias.copy_(
                _tensor(conv_bias) if conv_bias is not None else torch.zeros_like(conv.bias)
            )
        for block, norm in zip([b for b in plan.blocks if b.norm], norms, strict=True):
            if block.norm is None:
                raise BrokenInvariant("block.norm is None")
            gamma, beta, means, variances, epsilon = block.norm
            norm.weight.copy_(_tensor(constants[gamma]))
            norm.bias.copy_(_tensor(constants[beta]))
            if norm.running_mean is None:
                raise BrokenInvariant("norm.running_mean is None")
            if norm.running_var is None:
                raise BrokenInvariant("norm.running_var is None")
            norm.running_mean.copy_(_tensor(constants[means]))
            norm.running_var.copy_(_tensor(constants[variances]))
            norm.eps = epsilon
        for dense, linear in zip(plan.dense, linears, strict=True):
            weight = constants[dense.weight]
            linear.weight.copy_(_tensor(weight if dense.transposed else weight.T))
            bias = constants.get(dense.bias or "")
            linear.bias.copy_(
                _tensor(bias.ravel()) if bias is not None else torch.zeros_like(linear.bias)
            )
        mean, scale = input_statistics(constants, plan, network.config.n_inputs)
        network.input_mean.copy_(_tensor(mean))
        network.input_scale.copy_(_tensor(scale))


def _check_parity(network: Network, onnx_bytes: bytes, plan: LayerPlan, sample: np.ndarray) -> None:
    from onnxruntime import InferenceSession, SessionOptions

    options = SessionOptions()
    options.intra_op_num_threads = 1
    session = InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    rows = (
        sample.reshape(len(sample), *[d for d in feed.shape[1:]]) if len(feed.shape) > 2 else sample
    )
    expected = np.asarray(session.run(None, {feed.name: rows})[0], dtype=np.float32)
    with torch.no_grad():
        tensor = torch.from_numpy(sample)
        got = (
            network.predict(tensor)
            if plan.softmax or not network.classification
            else network(tensor)
        ).numpy()
    if got.shape != expected.shape or not np.allclose(
        got, expected, atol=PARITY_TOLERANCE, rtol=PARITY_TOLERANCE
    ):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else None
        raise UnsupportedGraph(
            f"the rebuilt network does not reproduce the graph's outputs "
            f"(largest difference {worst}); it cannot be trained"
        )


def network_from_onnx(
    onnx_bytes: bytes, row_shape: list[int], classification: bool, sample: np.ndarray | None = None
) -> Network:
    """The trainable network the graph holds; UnsupportedGraph if it holds none.
    ``sample``: rows to compare the two on (random rows around the graph's own
    normalisation when none are given)."""
    model = onnx.load_model_from_string(onnx_bytes)
    plan = read_layers(model, row_shape)
    constants = constants_of(model)
    if plan.architecture is None:
        raise BrokenInvariant("read_layers returned a plan without an architecture")
    network = Network(plan.architecture, classification)
    _copy_weights(network, plan, constants)
    network.eval()
    if sample is None:
        rng = np.random.default_rng(0)
        mean = network.input_mean.numpy()
        spread = 1.0 / np.maximum(np.abs(network.input_scale.numpy()), 1e-6)
        sample = (mean + spread * rng.normal(size=(PARITY_ROWS, len(mean)))).astype(np.float32)
    _check_parity(network, onnx_bytes, plan, np.ascontiguousarray(sample, dtype=np.float32))
    return network

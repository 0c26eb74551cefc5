"""Reading an uploaded ONNX graph as a stack of ordinary layers, so that it can become a
trainable network (``app.training.from_onnx``): an optional input normalisation, then dense
layers (Gemm, or MatMul + Add) with one activation between them; or convolution blocks
(Conv, optional BatchNormalization, activation, optional 2x2 pooling) before them; and an
optional Softmax at the end. Anything else is refused with the operator (or the detail)
named. Torch-free: the gateway reads a graph when it is uploaded, the worker again when it
builds the network."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from app.contracts.networks import CNNConfig, MLPConfig
from app.core.errors import InvalidInput

ACTIVATION_OPS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Gelu": "gelu"}
POOL_OPS = {"MaxPool": "max", "AveragePool": "avg"}
SUPPORTED = sorted(
    {
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Softmax",
        "Conv",
        "BatchNormalization",
        "Flatten",
        "Reshape",
        "Identity",
        "Dropout",
        *ACTIVATION_OPS,
        *POOL_OPS,
    }
)


class UnsupportedGraph(InvalidInput):
    """The graph is not a stack of layers ModelKiln can train; the message says why."""


@dataclass
class Dense:
    weight: str  # initializer, stored [in, out] (MatMul, Gemm transB=0) or [out, in]
    transposed: bool  # True when stored [out, in]
    bias: str | None


@dataclass
class Block:
    conv: str
    conv_bias: str | None
    norm: tuple[str, str, str, str, float] | None = None  # scale, B, mean, var, epsilon
    pooled: bool = False


@dataclass
class LayerPlan:
    """The layers found, in order, with the initializers that hold their weights."""

    architecture: MLPConfig | CNNConfig | None  # None until the walk ends
    dense: list[Dense]
    blocks: list[Block] = field(default_factory=list)
    input_shift: str | None = None  # x - shift (or x + -shift)
    input_shift_sign: float = 1.0
    input_scale: str | None = None  # x * scale (or x / divisor)
    input_scale_inverted: bool = False
    softmax: bool = False


class _Walk:
    """The nodes from the input to the output, one consumer after another."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        inputs = [i.name for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise UnsupportedGraph(
                "the graph must have one input and one output to be trained as a network"
            )
        self.current, self.output = inputs[0], graph.output[0].name
        self.steps, self.limit = 0, len(graph.node)
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                continue
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def peek(self) -> onnx.NodeProto | None:
        users = self.consumers.get(self.current, [])
        if self.current == self.output and not users:
            return None
        if len(users) != 1:
            raise UnsupportedGraph(
                f"tensor {self.current!r} feeds {len(users)} operators; "
                "only a chain of layers can be trained"
            )
        return users[0]

    def take(self, node: onnx.NodeProto) -> None:
        self.steps += 1
        if self.steps > self.limit or node.output[0] == self.current:
            raise UnsupportedGraph("the graph loops back on itself")
        self.current = node.output[0]

    def constant_of(self, node: onnx.NodeProto) -> str:
        others = [name for name in node.input if name != self.current]
        if len(others) != 1 or others[0] not in self.constants:
            raise UnsupportedGraph(
                f"{node.op_type} {node.name!r} does not combine the data with one constant"
            )
        return others[0]


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_ops(model: onnx.ModelProto) -> None:
    unknown = sorted({n.op_type for n in model.graph.node} - {*SUPPORTED, "Constant"})
    if unknown:
        raise UnsupportedGraph(
            f"operator {unknown[0]!r} cannot be turned into a trainable "
            f"layer (supported: {', '.join(SUPPORTED)})"
        )


def _dense(walk: _Walk, node: onnx.NodeProto) -> Dense:
    if node.op_type == "Gemm":
        attributes = _attributes(node)
        if (
            attributes.get("transA", 0)
            or attributes.get("alpha", 1.0) != 1.0
            or attributes.get("beta", 1.0) != 1.0
        ):
            raise UnsupportedGraph(f"Gemm {node.name!r} has transA, alpha or beta set")
        weight, bias = node.input[1], node.input[2] if len(node.input) > 2 else None
        if weight not in walk.constants or (bias is not None and bias not in walk.constants):
            raise UnsupportedGraph(f"Gemm {node.name!r} takes weights that are not constants")
        walk.take(node)
        return Dense(weight, bool(attributes.get("transB", 0)), bias)
    weight = walk.constant_of(node)
    if node.input[1] != weight:
        raise UnsupportedGraph(f"MatMul {node.name!r} multiplies the weights from the left")
    walk.take(node)
    following = walk.peek()
    bias = None
    if following is not None and following.op_type == "Add":
        bias = walk.constant_of(following)
        walk.take(following)
    return Dense(weight, False, bias)


def _activation(walk: _Walk, seen: set[str]) -> None:
    node = walk.peek()
    if node is None or node.op_type not in ACTIVATION_OPS:
        raise UnsupportedGraph(
            "two dense or convolution layers follow each other without an activation between them"
        )
    seen.add(ACTIVATION_OPS[node.op_type])
    walk.take(node)


def _skip_noops(walk: _Walk) -> onnx.NodeProto | None:
    node = walk.peek()
    while node is not None and node.op_type in ("Identity", "Dropout"):
        walk.take(node)
        node = walk.peek()
    return node


def _normalisation(walk: _Walk, plan: LayerPlan) -> None:
    """x - mean (or + shift), then / std (or * scale), before the first layer."""
    node = _skip_noops(walk)
    if node is not None and node.op_type in ("Sub", "Add") and node.input[0] == walk.current:
        plan.input_shift = walk.constant_of(node)
        plan.input_shift_sign = 1.0 if node.op_type == "Sub" else -1.0
        walk.take(node)
        node = _skip_noops(walk)
    if node is not None and node.op_type in ("Div", "Mul") and node.input[0] == walk.current:
        plan.input_scale = walk.constant_of(node)
        plan.input_scale_inverted = node.op_type == "Div"
        walk.take(node)


def _blocks(walk: _Walk, plan: LayerPlan, activations: set[str]) -> tuple[list[int], int, set[str]]:
    """Conv blocks; returns their channels, their kernel and the pooling kinds."""
    channels: list[int] = []
    kernels: set[int] = set()
    pools: set[str] = set()
    node = _skip_noops(walk)
    while node is not None and node.op_type == "Conv":
        attributes = _attributes(node)
        weight = walk.constants.get(node.input[1])
        if weight is None:
            raise UnsupportedGraph(f"Conv {node.name!r} takes weights that are not constants")
        kernel = int(weight.shape[-1])
        if (
            weight.shape[-2] != kernel
            or list(attributes.get("pads", [kernel // 2] * 4)) != [kernel // 2] * 4
            or set(attributes.get("strides", [1, 1])) != {1}
            or attributes.get("group", 1) != 1
            or set(attributes.get("dilations", [1])) != {1}
        ):
            raise UnsupportedGraph(
                f"Conv {node.name!r}: only square kernels with 'same' "
                "padding, stride 1, no groups or dilation can be trained"
            )
        block = Block(node.input[1], node.input[2] if len(node.input) > 2 else None)
        walk.take(node)
        channels.append(int(weight.shape[0]))
        kernels.add(kernel)
        node = _skip_noops(walk)
        if node is not None and node.op_type == "BatchNormalization":
            block.norm = (*node.input[1:5], float(_attributes(node).get("epsilon", 1e-5)))
            walk.take(node)
        _activation(walk, activations)
        node = _skip_noops(walk)
        if node is not None and node.op_type in POOL_OPS:
            attributes = _attributes(node)
            if list(attributes.get("kernel_shape", [])) != [2, 2] or list(
                attributes.get("strides", [])
            ) != [2, 2]:
                raise UnsupportedGraph(
                    f"{node.op_type} {node.name!r}: only 2x2 pooling with stride 2 can be trained"
                )
            pools.add(POOL_OPS[node.op_type])
            block.pooled = True
            walk.take(node)
            node = _skip_noops(walk)
        plan.blocks.append(block)
    if len(kernels) > 1:
        raise UnsupportedGraph("the convolutions use different kernel sizes")
    return channels, kernels.pop() if kernels else 3, pools


def read_layers(model: onnx.ModelProto, row_shape: list[int]) -> LayerPlan:
    """The graph as layers, or UnsupportedGraph naming what stands in the way.
    ``row_shape``: one row of the input (``[features]``, or ``[channels, height, width]``
    for an image model). A graph malformed in a way no rule above names (a node short of
    inputs, a weight of the wrong rank) is refused as such, never with another error."""
    try:
        return _read_layers(model, row_shape)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as malformed:
        kind = type(malformed).__name__
        raise UnsupportedGraph(
            f"the graph could not be read as layers ({kind} while following its nodes)"
        ) from None


def _read_layers(model: onnx.ModelProto, row_shape: list[int]) -> LayerPlan:
    _check_ops(model)
    walk = _Walk(model)
    plan = LayerPlan(architecture=None, dense=[])
    activations: set[str] = set()
    node = _skip_noops(walk)
    image_shape: list[int] | None = None
    if node is not None and node.op_type == "Reshape" and len(row_shape) == 1:
        target = walk.constants.get(node.input[1])
        if target is None or len(target) != 4:
            raise UnsupportedGraph("the input is reshaped into something other than images")
        image_shape = [int(v) for v in target[1:]]  # flat rows as [channels, height, width]
        walk.take(node)
    _normalisation(walk, plan)
    channels, kernel, pools = _blocks(walk, plan, activations)
    if len(pools) > 1 or (pools and not all(block.pooled for block in plan.blocks)):
        raise UnsupportedGraph("the convolution blocks pool differently")
    node = _skip_noops(walk)
    if node is not None and node.op_type in ("Flatten", "Reshape"):
        walk.take(node)
    node = _skip_noops(walk)
    while node is not None and node.op_type in ("Gemm", "MatMul"):
        plan.dense.append(_dense(walk, node))
        node = _skip_noops(walk)
        if node is not None and node.op_type in ("Gemm", "MatMul"):
            raise UnsupportedGraph(
                "two dense layers follow each other without an activation between them"
            )
        if node is not None and node.op_type in ACTIVATION_OPS:
            _activation(walk, activations)
            node = _skip_noops(walk)
            if node is None or node.op_type not in ("Gemm", "MatMul"):
                raise UnsupportedGraph(
                    "an activation follows the output layer; a trainable "
                    "network ends with its output layer (or a Softmax)"
                )
    if node is not None and node.op_type == "Softmax":
        plan.softmax = True
        walk.take(node)
        node = _skip_noops(walk)
    if node is not None or walk.current != walk.output:
        what = node.op_type if node is not None else "the graph's end"
        raise UnsupportedGraph(f"{what} where the layers should have ended")
    if not plan.dense:
        raise UnsupportedGraph("the graph has no dense layer to train")
    if len(activations) > 1:
        raise UnsupportedGraph(
            f"the layers use different activations ({sorted(activations)}); "
            "a trainable network uses one"
        )
    _shape_architecture(
        walk, plan, image_shape, channels, kernel, pools, next(iter(activations), "relu")
    )
    return plan


def _width(walk: _Walk, dense: Dense) -> tuple[int, int]:
    """(inputs, outputs) of a dense layer."""
    rows, columns = walk.constants[dense.weight].shape
    return (columns, rows) if dense.transposed else (rows, columns)


def _shape_architecture(
    walk: _Walk,
    plan: LayerPlan,
    image_shape: list[int] | None,
    channels: list[int],
    kernel: int,
    pools: set[str],
    activation: str,
) -> None:
    widths = [_width(walk, dense) for dense in plan.dense]
    for (_, out), (into, _) in itertools.pairwise(widths):
        if out != into:
            raise UnsupportedGraph("a dense layer's outputs do not match the next one's inputs")
    if not plan.blocks:
        plan.architecture = MLPConfig(
            n_inputs=widths[0][0],
            n_outputs=widths[-1][1],
            hidden=tuple(w[1] for w in widths[:-1]),
            activation=activation,
            dropout=0.0,
            batch_norm=False,
            fixed_scaling=True,
        )
        return
    if len(widths) != 2:
        raise UnsupportedGraph(
            "after the convolutions a trainable CNN has one hidden dense "
            f"layer and the output layer; this graph has {len(widths)}"
        )
    if image_shape is None or len(image_shape) != 3:
        raise UnsupportedGraph(
            "the convolutions read a 4-D input; ModelKiln trains image "
            "models that take flat rows and reshape them inside the graph "
            "(as the ones it exports do)"
        )
    norms = {block.norm is not None for block in plan.blocks}
    if len(norms) > 1:
        raise UnsupportedGraph("some convolution blocks have batch normalization, some not")
    plan.architecture = CNNConfig(
        input_shape=(image_shape[0], image_shape[1], image_shape[2]),
        n_outputs=widths[-1][1],
        channels=tuple(channels),
        kernel=kernel,
        pooling=pools.pop() if pools else "none",
        head_width=widths[0][1],
        activation=activation,
        dropout=0.0,
        batch_norm=norms == {True},
        fixed_scaling=True,
    )


def input_statistics(
    walk_constants: dict[str, np.ndarray], plan: LayerPlan, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) with ``(x - mean) * scale`` equal to the graph's own normalisation."""
    mean = np.zeros(width, dtype=np.float32)
    scale = np.ones(width, dtype=np.float32)
    if plan.input_shift is not None:
        mean = mean + plan.input_shift_sign * np.broadcast_to(
            walk_constants[plan.input_shift].astype(np.float32).ravel(), (width,)
        )
    if plan.input_scale is not None:
        values = np.broadcast_to(
            walk_constants[plan.input_scale].astype(np.float32).ravel(), (width,)
        )
        scale = 1.0 / values if plan.input_scale_inverted else values.copy()
    return mean.astype(np.float32), scale.astype(np.float32)


def constants_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values by name."""
    return _Walk(model).constants

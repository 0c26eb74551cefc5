"""One small graph per ai.onnx operator of ``app.onnx_graphs.classify.ALLOWED_OPS``
(``CASES``; ``ml_graphs`` has the ai.onnx.ml ones, ``value_graphs`` the shape-like inputs
computed from values): float32 input ``x`` [batch, 4], output ``y`` [batch, 2], every shape
static but the batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from tests.onnx_graphs.graph import INT64, Body, Case, Graph

CASES: dict[tuple[str, str], Case] = {}
REDUCTIONS = (
    *("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"),
    *("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"),
)


def case(op: str) -> Callable[[Body], Body]:
    """Register a body as the graph of ai.onnx's ``op`` in CASES."""

    def register(body: Body) -> Body:
        CASES[("", op)] = Case(body)
        return body

    return register


def image(g: Graph, channels: int = 1) -> str:
    """x as images: [batch, 1, 2, 2], or [batch, 4, 1, 1]."""
    return g.reshape("x", -1, 1, 2, 2) if channels == 1 else g.reshape("x", -1, 4, 1, 1)


# Element-wise operators, activations and reductions: one pattern each.
def _unary(op: str, **attrs: Any) -> Body:
    return lambda g: (g.op(op, "x", **attrs), 4)


def _binary(op: str, **attrs: Any) -> Body:
    return lambda g: (g.op(op, "x", g.const([0.5, 1.0, 1.5, 2.0]), **attrs), 4)


def _compared(op: str) -> Body:
    return lambda g: (g.floats(g.op(op, "x", g.const([0.0, 0.5, 1.0, 2.0]))), 4)


def _logical(op: str) -> Body:
    def body(g: Graph) -> tuple[str, int]:
        positive, small = g.op("Greater", "x", g.const(0.0)), g.op("Less", "x", g.const(1.0))
        return g.floats(g.op(op, positive) if op == "Not" else g.op(op, positive, small)), 4

    return body


def _flags(op: str) -> Body:
    return lambda g: (g.floats(g.op(op, "x")), 4)


def _pooled(op: str, **attrs: Any) -> Body:
    return lambda g: (g.flat(g.op(op, image(g), **attrs)), 1)


def _reduced(op: str) -> Body:
    return lambda g: (g.op(op, g.reshape("x", -1, 2, 2), g.ints(2), keepdims=0), 2)


def _arg(op: str) -> Body:
    return lambda g: (g.floats(g.op(op, g.reshape("x", -1, 2, 2), axis=2, keepdims=0)), 2)


def _normalised(op: str, shape: tuple[int, ...], params: int, weights: int, **attrs: Any) -> Body:
    def body(g: Graph) -> tuple[str, int]:
        inputs = [g.const(np.linspace(0.5, 1.5, params)) for _ in range(weights)]
        if op == "BatchNormalization":
            inputs.append(g.const(np.full(params, 2.0)))  # the variance
        return g.flat(g.op(op, g.reshape("x", -1, *shape), *inputs, **attrs)), 4

    return body


UNARY = (
    *("Neg", "Abs", "Sqrt", "Reciprocal", "Exp", "Log", "Floor", "Ceil", "Round", "Sign"),
    *("Erf", "Sin", "Cos", "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid"),
    *("HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Softmax", "LogSoftmax"),
    *("Hardmax", "Mish", "ThresholdedRelu", "Shrink", "Identity", "Dropout"),
)
CASES |= {("", op): Case(_unary(op)) for op in UNARY}
CASES[("", "Gelu")] = Case(_unary("Gelu"), opset=20)
CASES[("", "LpNormalization")] = Case(_unary("LpNormalization", axis=1))
for op in ("Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Mean", "PRelu"):
    CASES[("", op)] = Case(_binary(op))
CASES[("", "Mod")] = Case(_binary("Mod", fmod=1))
for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
    CASES[("", op)] = Case(_compared(op))
CASES |= {("", op): Case(_logical(op)) for op in ("Not", "And", "Or", "Xor")}
CASES |= {("", op): Case(_flags(op)) for op in ("IsNaN", "IsInf")}
for op in ("MaxPool", "AveragePool", "LpPool"):
    CASES[("", op)] = Case(_pooled(op, kernel_shape=[2, 2]))
CASES |= {("", op): Case(_pooled(op)) for op in ("GlobalAveragePool", "GlobalMaxPool")}
CASES |= {("", op): Case(_reduced(op)) for op in REDUCTIONS}
CASES |= {("", op): Case(_arg(op)) for op in ("ArgMax", "ArgMin")}
CASES |= {
    ("", "BatchNormalization"): Case(_normalised("BatchNormalization", (4,), 4, 3)),
    ("", "LayerNormalization"): Case(_normalised("LayerNormalization", (2, 2), 2, 2)),
    ("", "InstanceNormalization"): Case(_normalised("InstanceNormalization", (2, 2), 2, 2)),
    ("", "GroupNormalization"): Case(
        _normalised("GroupNormalization", (4, 1), 4, 2, num_groups=2), opset=21
    ),
    ("", "LRN"): Case(_normalised("LRN", (4, 1, 1), 0, 0, size=3)),
    ("", "MeanVarianceNormalization"): Case(
        _normalised("MeanVarianceNormalization", (4, 1, 1), 0, 0, axes=[1, 2, 3])
    ),
}


# Dense, convolution and quantization.
@case("Gemm")
def _gemm(g: Graph) -> tuple[str, int]:
    return g.op("Gemm", "x", g.const(np.ones((4, 3))), g.const([1.0] * 3)), 3


@case("MatMul")
def _matmul(g: Graph) -> tuple[str, int]:
    return g.op("MatMul", "x", g.const(np.ones((4, 3)))), 3


@case("Conv")
def _conv(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("Conv", image(g), g.const(np.ones((3, 1, 2, 2))))), 3


@case("ConvTranspose")
def _conv_transpose(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("ConvTranspose", image(g), g.const(np.ones((1, 2, 2, 2))))), 18


@case("QuantizeLinear")
def _quantize(g: Graph) -> tuple[str, int]:
    scale, zero = g.const(0.1), g.const(128, np.uint8)
    return g.op("DequantizeLinear", g.op("QuantizeLinear", "x", scale, zero), scale, zero), 4


@case("DequantizeLinear")
@case("DynamicQuantizeLinear")
def _dynamic(g: Graph) -> tuple[str, int]:
    return g.op("DequantizeLinear", *g.outputs("DynamicQuantizeLinear", "x", outs=3)), 4


@case("MatMulInteger")
def _matmul_integer(g: Graph) -> tuple[str, int]:
    values, scale, zero = g.outputs("DynamicQuantizeLinear", "x", outs=3)
    product = g.op("MatMulInteger", values, g.const(np.arange(12).reshape(4, 3), np.uint8), zero)
    return g.op("Mul", g.floats(product), scale), 3


@case("ConvInteger")
def _conv_integer(g: Graph) -> tuple[str, int]:
    values, scale, zero = g.outputs("DynamicQuantizeLinear", "x", outs=3)
    weight = g.const(np.arange(12).reshape(3, 1, 2, 2), np.uint8)
    product = g.op("ConvInteger", g.reshape(values, -1, 1, 2, 2), weight, zero)
    return g.op("Mul", g.flat(g.floats(product)), scale), 3


def _qlinear(g: Graph, conv: bool) -> tuple[str, int]:
    scale, zero = g.const(0.05), g.const(128, np.uint8)
    quantized = g.op("QuantizeLinear", "x", scale, zero)
    source = g.reshape(quantized, -1, 1, 2, 2) if conv else quantized
    weight = np.arange(12).reshape((3, 1, 2, 2) if conv else (4, 3)) - 6
    weights = [g.const(weight, np.int8), g.const(0.02), g.const(0, np.int8)]
    op = "QLinearConv" if conv else "QLinearMatMul"
    result = g.op(op, source, scale, zero, *weights, g.const(0.1), zero)
    dequantized = g.op("DequantizeLinear", result, g.const(0.1), zero)
    return (g.flat(dequantized) if conv else dequantized), 3


CASES[("", "QLinearMatMul")] = Case(lambda g: _qlinear(g, conv=False))
CASES[("", "QLinearConv")] = Case(lambda g: _qlinear(g, conv=True))


# Layout, casts and shapes.
@case("Shape")
def _torch_flatten(g: Graph) -> tuple[str, int]:
    """torch's x.view(x.size(0), -1): Shape, Gather, Unsqueeze, Concat, Reshape."""
    rows = g.op("Gather", g.op("Shape", "x"), g.const(0, np.int64), axis=0)
    target = g.op("Concat", g.op("Unsqueeze", rows, g.ints(0)), g.ints(-1), axis=0)
    return g.op("Reshape", "x", target), 4


@case("Size")
def _size(g: Graph) -> tuple[str, int]:
    return g.op("Mul", "x", g.floats(g.op("Size", "x"))), 4


@case("Constant")
def _constant(g: Graph) -> tuple[str, int]:
    ones = numpy_helper.from_array(np.ones(4, np.float32))
    return g.op("Add", "x", g.op("Constant", value=ones)), 4


@case("Cast")
def _cast(g: Graph) -> tuple[str, int]:
    return g.floats(g.op("Cast", "x", to=TensorProto.INT32)), 4


@case("CastLike")
def _cast_like(g: Graph) -> tuple[str, int]:
    return g.floats(g.op("CastLike", "x", g.const(0.0, np.float64))), 4


@case("Clip")
def _clip(g: Graph) -> tuple[str, int]:
    return g.op("Clip", "x", g.const(-1.0), g.const(1.0)), 4


@case("Where")
def _where(g: Graph) -> tuple[str, int]:
    return g.op("Where", g.op("Greater", "x", g.const(0.0)), "x", g.const(0.5)), 4


@case("ConstantOfShape")
def _constant_of_shape(g: Graph) -> tuple[str, int]:
    return g.op("Add", "x", g.op("ConstantOfShape", g.ints(1, 4))), 4


@case("Expand")
def _expand(g: Graph) -> tuple[str, int]:
    wide = g.op("Expand", g.reshape("x", -1, 1, 4), g.ints(1, 3, 4))
    return g.op("ReduceSum", wide, g.ints(1), keepdims=0), 4


@case("Tile")
def _tile(g: Graph) -> tuple[str, int]:
    return g.op("Tile", "x", g.ints(1, 2)), 8


@case("Pad")
def _pad(g: Graph) -> tuple[str, int]:
    return g.op("Pad", "x", g.ints(0, 1, 0, 1)), 6


@case("Slice")
def _slice(g: Graph) -> tuple[str, int]:
    return g.op("Slice", "x", g.ints(1), g.ints(3), g.ints(1)), 2


@case("Split")
def _split(g: Graph) -> tuple[str, int]:
    return g.outputs("Split", "x", g.ints(1, 3), outs=2, axis=1)[1], 3


@case("Squeeze")
def _squeeze(g: Graph) -> tuple[str, int]:
    return g.op("Squeeze", g.reshape("x", -1, 1, 4), g.ints(1)), 4


@case("Unsqueeze")
def _unsqueeze(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("Unsqueeze", "x", g.ints(1))), 4


@case("Reshape")
def _reshape(g: Graph) -> tuple[str, int]:
    return g.reshape(g.reshape("x", -1, 2, 2), 0, -1), 4


@case("Flatten")
def _flatten(g: Graph) -> tuple[str, int]:
    return g.flat(g.reshape("x", -1, 2, 2)), 4


@case("Transpose")
def _transpose(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("Transpose", g.reshape("x", -1, 2, 2), perm=[0, 2, 1])), 4


@case("Concat")
def _concat(g: Graph) -> tuple[str, int]:
    return g.op("Concat", "x", "x", axis=1), 8


@case("Gather")
def _gather(g: Graph) -> tuple[str, int]:
    return g.op("Gather", "x", g.ints(0, 2), axis=1), 2


@case("GatherElements")
def _gather_elements(g: Graph) -> tuple[str, int]:
    indices = g.op("Cast", g.op("Greater", "x", g.const(0.0)), to=INT64)  # [batch, 4] of 0, 1
    return g.op("GatherElements", "x", indices, axis=1), 4


@case("GatherND")
def _gather_nd(g: Graph) -> tuple[str, int]:
    first = g.op("Slice", "x", g.ints(0), g.ints(1), g.ints(1))
    indices = g.op("Cast", g.op("Greater", first, g.const(0.0)), to=INT64)  # [batch, 1]
    picked = g.op("GatherND", "x", indices, batch_dims=1)
    return g.op("Unsqueeze", picked, g.ints(1)), 1


@case("Range")
def _range(g: Graph) -> tuple[str, int]:
    return g.op("Add", "x", g.op("Range", g.const(0.0), g.const(4.0), g.const(1.0))), 4


@case("Resize")
def _resize(g: Graph) -> tuple[str, int]:
    scales = g.const([1.0, 1.0, 2.0, 2.0])
    return g.flat(g.op("Resize", image(g), "", scales, mode="nearest")), 16


@case("DepthToSpace")
def _depth_to_space(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("DepthToSpace", image(g, 4), blocksize=2)), 4


@case("SpaceToDepth")
def _space_to_depth(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("SpaceToDepth", image(g), blocksize=2)), 4

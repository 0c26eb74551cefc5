"""Whether each row of a bounded graph's answer depends on that input row alone, proven
from the graph (nothing runs): then requests may share one run (same-turn coalescing,
dynamic batching, a shadow's batches) without one client's rows changing another's answer.
A graph may be bounded and still mix rows: ``x - mean(x over the batch)``, a softmax over
axis 0, a slice of the first rows, a value divided by the number of rows.

Every tensor is one of three kinds: ``static`` (initializers and what is computed from them
alone), ``rows`` (computed from the input, one row per input row on its first axis) or
``count`` (computed from the input's shape only: its values may follow the number of rows).
A node with a ``rows`` input must be an operator with a rule here that keeps its rows apart
(an element-wise op whose row inputs have the output's rank; a contraction whose weights are
static; an axis, a permutation or a padding that leaves axis 0 alone), ``count`` tensors
may only size an output (a Reshape's shape, a Slice's ends), and every output it makes must
have the batch, exactly once per row, as its first dimension. Anything else is judged as
possibly mixing rows: each request then runs alone, which is always correct."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import onnx
from onnx import helper

from app.onnx_graphs.shape_rules import BATCH, ML, Constant, Dims, read_dims

Kind = Literal["static", "rows", "count"]
Check = Callable[[onnx.NodeProto, list[Dims | None], Constant, int], str | None]


def _attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _on_axis_zero(axis: object, rank: int) -> bool:
    return isinstance(axis, int) and axis % max(rank, 1) == 0


def _rank(inputs: list[Dims | None]) -> int:
    return len(inputs[0]) if inputs and inputs[0] is not None else 0


def _row_wise(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> None:
    """Each output row is computed from the same row of the inputs (checked by rank and
    first dimension, for every operator, in ``mixing_reason``)."""
    return None


def _axis_not_zero(name: str, default: int) -> Check:
    def check(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> str | None:
        if _on_axis_zero(_attribute(node, name, default), _rank(inputs)):
            return f"its {name} is the batch axis"
        return None

    return check


def _softmax(
    node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, opset: int
) -> str | None:
    """Opset 13 on: over one axis (default -1); before: over every axis from ``axis`` on
    (default 1), so axis 0 takes in the whole batch either way."""
    return _axis_not_zero("axis", -1 if opset >= 13 else 1)(node, inputs, _, opset)


def _axes(node: onnx.NodeProto, constant: Constant, position: int) -> list[int] | None:
    """The axes an operator names by attribute, or by a constant input at ``position``;
    None when it names none or they are not constant."""
    axes = _attribute(node, "axes")
    if isinstance(axes, list | tuple):
        return [int(axis) for axis in axes]
    if len(node.input) > position and node.input[position]:
        values = constant(node.input[position])
        return [int(value) for value in values] if values is not None else None
    return None


def _reduction(
    node: onnx.NodeProto, inputs: list[Dims | None], constant: Constant, _: int
) -> str | None:
    if node.op_type in ("ArgMax", "ArgMin"):
        return _axis_not_zero("axis", 0)(node, inputs, constant, _)
    axes = _axes(node, constant, 1)
    if axes is None:
        if _attribute(node, "noop_with_empty_axes", 0) == 1 and len(node.input) < 2:
            return None
        return "it reduces over every axis (or axes that are not constant)"
    if any(_on_axis_zero(axis, _rank(inputs)) for axis in axes):
        return "it reduces over the batch axis"
    return None


def _named_axes(position: int, default: tuple[int, ...] | None) -> Check:
    """Squeeze, Slice, MeanVarianceNormalization: constant axes (by attribute, or by the
    input at ``position``), none of them 0; ``default``: the axes when none are named
    (None: every axis)."""

    def check(
        node: onnx.NodeProto, inputs: list[Dims | None], constant: Constant, _: int
    ) -> str | None:
        axes = _axes(node, constant, position)
        if axes is None and len(node.input) > position and node.input[position]:
            return "its axes are not constant"
        if axes is None:
            if default is None:
                return "it takes every axis, the batch's too"
            axes = list(default)
        if any(_on_axis_zero(axis, _rank(inputs)) for axis in axes):
            return "it acts on the batch axis"
        return None

    return check


def _training(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> str | None:
    if _attribute(node, "training_mode", 0):
        return "it normalises with the batch's own statistics (training_mode)"
    return None


def _transpose(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> str | None:
    perm = _attribute(node, "perm")
    rank = _rank(inputs)
    if rank > 1 and (not isinstance(perm, list | tuple) or not perm or perm[0] != 0):
        return "it moves the batch axis"
    return None


def _pad(node: onnx.NodeProto, inputs: list[Dims | None], constant: Constant, _: int) -> str | None:
    rank = _rank(inputs)
    pads_attr = _attribute(node, "pads")
    pads = (
        [float(value) for value in pads_attr]
        if isinstance(pads_attr, list | tuple)
        else constant(node.input[1])
        if len(node.input) > 1 and node.input[1]
        else None
    )
    axes = _axes(node, constant, 3) if len(node.input) > 3 else list(range(rank))
    if pads is None or axes is None or len(pads) != 2 * len(axes):
        return "its pads or axes are not constant"
    for index, axis in enumerate(axes):
        if _on_axis_zero(axis, rank) and (pads[index] or pads[index + len(axes)]):
            return "it pads the batch axis"
    return None


def _resize(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> str | None:
    if _attribute(node, "coordinate_transformation_mode") == b"tf_crop_and_resize":
        return "it crops every axis by a region of interest"
    return None


def _gather(
    node: onnx.NodeProto, inputs: list[Dims | None], constant: Constant, opset: int
) -> str | None:
    """A row input as the indices (an embedding lookup) keeps rows apart; as the data,
    only when the gathered axis is not the batch's."""
    data_is_rows = inputs[0] is not None and len(inputs[0]) > 0 and inputs[0][0] == BATCH
    if not data_is_rows:
        return None
    if node.op_type == "GatherND":
        batch_dims = _attribute(node, "batch_dims", 0)
        return (
            None if isinstance(batch_dims, int) and batch_dims >= 1 else "it indexes the batch axis"
        )
    return _axis_not_zero("axis", 0)(node, inputs, constant, opset)


def _first_only(
    node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int
) -> str | None:
    """Gemm, MatMul and friends: rows times static weights (A = [batch, k]); rows as the
    weights would multiply rows by rows."""
    if node.op_type == "Gemm" and _attribute(node, "transA", 0):
        return "it transposes its rows (transA)"
    return None


def _whole_batch(node: onnx.NodeProto, inputs: list[Dims | None], _: Constant, __: int) -> str:
    return "it quantizes with one scale taken from the whole batch's range"


_ELEMENTWISE = (
    *("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Sqrt", "Reciprocal"),
    *("Exp", "Log", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos"),
    *("Min", "Max", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "LessOrEqual"),
    *("GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"),
    *("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid"),
    *("HardSwish", "Tanh", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Clip"),
    *("Shrink", "Cast", "CastLike", "Identity", "Dropout", "QuantizeLinear"),
    "DequantizeLinear",
)
_PER_SAMPLE = (  # [batch, channels, ...] in, each sample on its own
    *("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool"),
    *("LpPool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "InstanceNormalization"),
    *("GroupNormalization", "DepthToSpace", "SpaceToDepth", "Reshape", "Expand", "Tile"),
)
_CONTRACTIONS = ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul")
_REDUCTIONS = (
    *("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"),
    *("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"),
)
_ML_ROW_WISE = (
    *("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "LinearClassifier"),
    *("LinearRegressor", "Normalizer", "Scaler", "Binarizer", "Imputer", "OneHotEncoder"),
    *("LabelEncoder", "ArrayFeatureExtractor", "CategoryMapper", "FeatureVectorizer"),
)

CHECKS: Mapping[tuple[str, str], Check] = MappingProxyType(
    {
        **{("", op): _row_wise for op in _ELEMENTWISE + _PER_SAMPLE},
        **{("", op): _first_only for op in _CONTRACTIONS},
        **{("", op): _reduction for op in _REDUCTIONS},
        **{("", op): _softmax for op in ("Softmax", "LogSoftmax", "Hardmax")},
        ("", "BatchNormalization"): _training,
        ("", "LayerNormalization"): _axis_not_zero("axis", -1),
        ("", "LpNormalization"): _axis_not_zero("axis", -1),
        ("", "MeanVarianceNormalization"): _named_axes(1 << 30, default=(0, 2, 3)),
        ("", "Flatten"): _axis_not_zero("axis", 1),
        ("", "Concat"): _axis_not_zero("axis", 0),
        ("", "Split"): _axis_not_zero("axis", 0),
        ("", "Squeeze"): _named_axes(1, default=None),
        ("", "Unsqueeze"): _row_wise,  # an axis 0 added fails the first-dimension check
        ("", "Slice"): _named_axes(3, default=None),
        ("", "Transpose"): _transpose,
        ("", "Pad"): _pad,
        ("", "Resize"): _resize,
        **{("", op): _gather for op in ("Gather", "GatherElements", "GatherND")},
        **{(ML, op): _row_wise for op in _ML_ROW_WISE},
        ("", "DynamicQuantizeLinear"): _whole_batch,
    }
)
"""(domain, operator) -> why a node with a row input may mix rows (None: it keeps them
apart, given the rank and first-dimension checks every node passes)."""

SIZE_OPS: frozenset[tuple[str, str]] = frozenset(
    ("", op) for op in ("Shape", "Size", "Constant", "ConstantOfShape", "Range")
)
"""Allowed operators without a rule: Shape and Size read a row input's size, not its rows
(their outputs are ``count``); the others take no row input in a bounded graph (one that
sizes them from row values is sandboxed)."""

# Inputs that only size an output: where a ``count`` tensor may go.
_SIZING: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "Reshape": frozenset({1}),
        "Expand": frozenset({1}),
        "Tile": frozenset({1}),
        "Slice": frozenset({1, 2, 4}),
        "Resize": frozenset({3}),
    }
)

# Of the inputs of these, only the first may be a row input (the rest are weights).
_WEIGHTED = frozenset(_CONTRACTIONS + _PER_SAMPLE[:4]) | {"BatchNormalization", "PRelu"}
_WEIGHTED |= {"LayerNormalization", "InstanceNormalization", "GroupNormalization", "Clip"}
_WEIGHTED |= {"QuantizeLinear", "DequantizeLinear", "Split", "Squeeze", "Unsqueeze", "Slice"}
_WEIGHTED |= {"Pad", "Resize", "Reshape", "Expand", "Tile", "Flatten", "Transpose", "Dropout"}


def _quoted(name: str) -> str:
    return repr("".join(char for char in name if char.isprintable())[:80])


def mixing_reason(
    graph: onnx.GraphProto,
    values: Mapping[str, onnx.ValueInfoProto],
    constant: Constant,
    opset: int,
) -> str | None:
    """Why rows of ``graph`` (already classified bounded, ``values`` its inferred shapes)
    may mix, naming the first node that could, or None: each row's answer depends on that
    input row alone."""
    kinds: dict[str, Kind] = {tensor.name: "static" for tensor in graph.initializer}
    for value in graph.input:
        kinds.setdefault(value.name, "rows")
    for node in graph.node:
        where = f"node {node.op_type}" + (f" {_quoted(node.name)}" if node.name else "")
        given = [kinds.get(name, "static") if name else "static" for name in node.input]
        if "rows" not in given:
            made: Kind = "count" if "count" in given else "static"
            kinds.update((name, made) for name in node.output if name)
            continue
        domain = "" if node.domain == "ai.onnx" else node.domain
        if node.op_type in ("Shape", "Size"):
            kinds.update((name, "count") for name in node.output if name)
            continue
        check = CHECKS.get((domain, node.op_type))
        if check is None:
            return f"{where} has no rule keeping each row's answer to its own row"
        for position, kind in enumerate(given):
            if kind == "count" and position not in _SIZING.get(node.op_type, frozenset()):
                return f"{where} computes with the number of rows"
            if kind == "rows" and position > 0 and node.op_type in _WEIGHTED:
                return f"{where} takes rows where it takes weights or sizes"
        inputs = [read_dims(values.get(name)) if name else None for name in node.input]
        outputs = [read_dims(values.get(name)) for name in node.output if name]
        for dims, kind in zip(inputs, given, strict=True):
            if kind == "rows" and (dims is None or not dims or dims[0] != BATCH):
                return f"{where} takes a tensor whose first axis is not the rows"
        rank = max((len(dims) for dims in outputs if dims is not None), default=0)
        if node.op_type in _ELEMENTWISE or node.op_type == "Expand":
            for dims, kind in zip(inputs, given, strict=True):
                if kind == "rows" and dims is not None and len(dims) != rank:
                    return f"{where} broadcasts rows of rank {len(dims)} against rank {rank}"
        reason = check(node, inputs, constant, opset)
        if reason is not None:
            return f"{where} may mix rows: {reason}"
        for dims in outputs:
            if dims is None or not dims or dims[0] != BATCH:
                return f"{where} makes a tensor whose first axis is not one row per input row"
        kinds.update((name, "rows") for name in node.output if name)
    output = graph.output[0].name
    if kinds.get(output) != "rows":
        return f"output {_quoted(output)} is not computed row by row from the input"
    return None

"""Whether an uploaded ONNX graph's cost is provably linear in its batch ("bounded") or not
("sandboxed"), by static analysis only: nothing here runs the graph or materialises a tensor.

Only bounded graphs run in the gateway process, under a row cap from what the probe
measured; a sandboxed one runs only in an isolated worker, because a shape that depends on
input values (ConstantOfShape, Expand, Tile, Resize, Range or Reshape fed from the input, a
Loop's trip count) or an N x N intermediate (X·Xᵀ) outgrows any estimate made on test rows.

A graph is bounded when every node is an operator of known cost (``ALLOWED_OPS``: each costs
a constant fixed by the file times the sizes of its inputs and outputs), with no subgraphs
or local functions, and when ONNX shape inference with data propagation, run on a copy whose
input's first dimension is the symbol ``kiln_batch`` and from which every shape the uploader
annotated was removed, proves every tensor a node produces static except for one batch
dimension at most (``app.onnx_graphs.shape_rules`` fills in what ONNX's inference cannot,
by rules that hold whatever the input's values). Then every tensor, and so every node's
cost, is at most linear in the rows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import onnx
from onnx import AttributeProto, TensorProto, helper, shape_inference

from app.onnx_graphs.row_independence import mixing_reason
from app.onnx_graphs.shape_rules import (
    BATCH,
    ML,
    batch_count,
    read_dims,
    resolve,
    small_constants,
)

MAX_ROUNDS = 16  # inference passes that may add what the shape rules work out
_KEPT_ELEMENTS = 1024  # a non-integer initializer larger than this is copied without values
_INTEGERS = frozenset({TensorProto.INT32, TensorProto.INT64})
_SHOWN = 80  # characters of a name a reason shows

# Each group's cost: dense and conv, output size times a contraction or kernel fixed by the
# weights' static shape (a quadratic product needs the batch twice in its output, which the
# shape rule refuses); pooling and LRN, output times a kernel fixed by attributes;
# normalisation, reductions and arg-reductions, a few passes over the input; element-wise,
# activations, casts and quantization, a constant per element; tree ensembles and linear
# models, per row a cost fixed by their attributes.
_DENSE = {"Gemm", "MatMul", "Conv", "ConvTranspose"}
_POOLING = {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool"}
_NORMALISATION = {
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LRN",
    "LpNormalization",
    "MeanVarianceNormalization",
}
_ARITHMETIC = {
    *("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Sqrt", "Reciprocal"),
    *("Exp", "Log", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos"),
    *("Min", "Max", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "LessOrEqual"),
    *("GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"),
}
_ACTIVATIONS = {
    *("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid"),
    *("HardSwish", "Tanh", "Softplus", "Softsign", "Softmax", "LogSoftmax", "Hardmax"),
    *("Mish", "ThresholdedRelu", "Clip", "Shrink"),
}
# Sizes of these follow from their inputs' shapes and from shape-like inputs; a shape-like
# input computed from the input's values leaves a dimension unknown, which the shape rule
# refuses, so the ops themselves are safe to allow.
_LAYOUT = {
    *("Cast", "CastLike", "Identity", "Dropout", "Shape", "Size", "Constant"),
    *("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split"),
    *("Slice", "Gather", "GatherElements", "GatherND", "Pad", "DepthToSpace"),
    *("SpaceToDepth", "ConstantOfShape", "Expand", "Tile", "Range", "Resize"),
}
_REDUCTIONS = {
    *("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"),
    *("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"),
}
_QUANTIZATION = {
    *("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger"),
    *("ConvInteger", "QLinearMatMul", "QLinearConv"),
}
_ML = {
    *("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "LinearClassifier"),
    *("LinearRegressor", "Normalizer", "Scaler", "Binarizer", "Imputer", "OneHotEncoder"),
    *("LabelEncoder", "ArrayFeatureExtractor", "CategoryMapper", "FeatureVectorizer"),
}

ALLOWED_OPS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "": frozenset(
            _DENSE
            | _POOLING
            | _NORMALISATION
            | _ARITHMETIC
            | _ACTIVATIONS
            | _LAYOUT
            | _REDUCTIONS
            | _QUANTIZATION
        ),
        ML: frozenset(_ML),
    }
)
"""Operator domain ("" is ai.onnx) -> the operators whose cost is a constant (fixed by the
file: weights, kernel and tree sizes) times the sizes of their inputs and outputs: what
ModelKiln's exporter, torch.onnx, skl2onnx, onnxmltools and onnxruntime's quantizer emit.
Left out: control flow (If, Loop, Scan), ops whose output size is data-dependent (NonZero,
Unique, TopK, NonMaxSuppression, Compress), Einsum (can be quadratic), sequences and maps
(SequenceConstruct, ZipMap, ...), random generators, string processing whose cost follows
the strings' length (StringNormalizer, TfIdfVectorizer), and every other domain."""


@dataclass(frozen=True)
class GraphClass:
    """Where an uploaded graph may run, and why (one sentence a user can act on)."""

    bounded: bool
    reason: str
    # Bounded graphs only: proven to answer each row from that row alone, so requests may
    # share one run (see app.onnx_graphs.row_independence); the reason says which.
    rows_independent: bool = False

    @property
    def label(self) -> Literal["bounded", "sandboxed"]:
        """``bounded`` (runs in the gateway) or ``sandboxed`` (only in sandbox processes)."""
        return "bounded" if self.bounded else "sandboxed"


BOUNDED_REASON = (
    "every node is an op of known cost and every shape is static except the batch, "
    "which no tensor holds more than once"
)
ROWS_APART = "; each row's answer depends on that row alone, so requests may share a run"
ROWS_MIXED = "; each request runs alone, since its rows may mix ({why})"


def _text(name: str) -> str:
    """A name from the file, printable and at most _SHOWN characters, quoted."""
    return repr("".join(char for char in name if char.isprintable())[:_SHOWN])


def _node_text(node: onnx.NodeProto) -> str:
    op = "".join(char for char in node.op_type if char.isprintable())[:_SHOWN]
    return f"{op} {_text(node.name)}" if node.name else op


def _sandboxed(reason: str) -> GraphClass:
    return GraphClass(bounded=False, reason=reason)


def classify(model: onnx.ModelProto) -> GraphClass:
    """Bounded when static analysis proves the graph's cost linear in its batch (see the
    module docstring); otherwise sandboxed, naming the first offending node, tensor or
    domain. The model is not modified. Raises only MemoryError (the probe reports it)."""
    try:
        reason = _structure(model)
        if reason is not None:
            return _sandboxed(reason)
        prepared = _skeleton(model)
        reason = _prepare(prepared)
        if reason is not None:
            return _sandboxed(reason)
        return _shapes(prepared, model)
    except MemoryError:
        raise
    except Exception as error:  # a malformed file the checker let through: not proven bounded
        return _sandboxed(f"the graph could not be analysed ({type(error).__name__})")


def _structure(model: onnx.ModelProto) -> str | None:
    """Why the graph's operators alone make it sandboxed, or None."""
    if model.functions:
        function = model.functions[0]
        return (
            f"the model defines local functions ({_text(function.domain)} "
            f"{_text(function.name)}); only standard operators run in the gateway"
        )
    graph = model.graph
    if graph.sparse_initializer:
        return "the graph has sparse initializers; store them as dense tensors"
    for node in graph.node:
        if any(
            attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
            or attribute.HasField("g")
            or attribute.graphs
            for attribute in node.attribute
        ):
            return f"node {_node_text(node)} runs a subgraph, whose cost depends on input values"
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain not in ALLOWED_OPS:
            return (
                f"node {_node_text(node)} is in operator domain {_text(domain)}, whose "
                "operators' cost is unknown"
            )
        if node.op_type not in ALLOWED_OPS[domain]:
            return (
                f"node {_node_text(node)} is not an operator of known cost (its time or "
                "memory may depend on input values)"
            )
    return None


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of what shape inference reads: the graph's nodes, inputs and outputs, and its
    initializers, those of more than _KEPT_ELEMENTS non-integer values (weights) as their
    type and dims alone: inference reads only small or integer tensors' values (shapes,
    axes, scales), and copying the weights would raise the probe's peak memory, from which
    it measures the memory per row."""
    prepared = onnx.ModelProto(ir_version=model.ir_version)
    prepared.opset_import.extend(model.opset_import)
    graph, source = prepared.graph, model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    for tensor in source.initializer:
        if tensor.data_type in _INTEGERS or math.prod(tensor.dims) <= _KEPT_ELEMENTS:
            graph.initializer.append(tensor)
        else:
            graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    return prepared


def _prepare(model: onnx.ModelProto) -> str | None:
    """Make ``model`` (a skeleton) one that shape inference can judge: the input's first
    dimension BATCH, no annotated shapes left to trust. Why it cannot be, or None."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        return f"the graph has {len(inputs)} inputs; exactly one is supported"
    source = inputs[0]
    if not source.type.HasField("tensor_type") or not source.type.tensor_type.HasField("shape"):
        return f"input {_text(source.name)} is not a tensor of declared shape"
    dims = source.type.tensor_type.shape.dim
    if not dims or any(not (dim.HasField("dim_value") and dim.dim_value > 0) for dim in dims[1:]):
        return f"input {_text(source.name)} must be [batch, fixed sizes...]"
    dims[0].Clear()
    dims[0].dim_param = BATCH
    for value in graph.input:  # an initializer listed as an input: its own shape, not one declared
        tensor = initializers.get(value.name)
        if tensor is not None:
            value.type.CopyFrom(helper.make_tensor_type_proto(tensor.data_type, tensor.dims))
    del graph.value_info[:]
    if not graph.output:
        return "the graph declares no outputs"
    for value in graph.output:
        if not value.type.HasField("tensor_type"):
            return f"output {_text(value.name)} is not a tensor (a sequence, map or optional)"
        value.type.tensor_type.ClearField("shape")
    return None


def _infer(model: onnx.ModelProto) -> onnx.ModelProto | str:
    """ONNX's shape inference with data propagation, or why it failed."""
    try:
        return shape_inference.infer_shapes(
            model, check_type=True, strict_mode=True, data_prop=True
        )
    except MemoryError:
        raise
    except Exception as error:
        detail = " ".join(str(error).split())
        detail = "".join(char for char in detail if char.isprintable())[:120]
        return f"ONNX shape inference failed on the graph ({type(error).__name__}: {detail})"


def _shapes(prepared: onnx.ModelProto, original: onnx.ModelProto) -> GraphClass:
    """Run inference (adding what the rules resolve, round by round), then judge each
    node's outputs and the graph's output."""
    for _ in range(MAX_ROUNDS):
        inferred = _infer(prepared)
        if isinstance(inferred, str):
            return _sandboxed(inferred)
        graph = inferred.graph
        values = {
            tensor.name: helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            for tensor in graph.initializer
        }
        values.update(
            (value.name, value) for value in (*graph.input, *graph.value_info, *graph.output)
        )
        added = resolve(graph, values)
        if not added:
            break
        outputs = {value.name: value for value in prepared.graph.output}
        for value in added:  # a graph output's shape lives on the output, not in value_info
            if value.name in outputs:
                outputs[value.name].type.CopyFrom(value.type)
            else:
                prepared.graph.value_info.append(value)
    else:
        return _sandboxed(
            f"more than {MAX_ROUNDS} chained reshapes have sizes ONNX cannot infer; give "
            "Reshape targets fixed sizes instead of -1"
        )
    for node in inferred.graph.node:
        for name in node.output:
            if not name:
                continue
            reason = _judge(name, values.get(name), node)
            if reason is not None:
                return _sandboxed(reason)
    judged = _judge_output(inferred.graph.output[0], original.graph.output[0])
    if not judged.bounded:
        return judged
    why = mixing_reason(inferred.graph, values, small_constants(inferred.graph), _opset(original))
    if why is None:
        return GraphClass(bounded=True, reason=BOUNDED_REASON + ROWS_APART, rows_independent=True)
    return GraphClass(bounded=True, reason=BOUNDED_REASON + ROWS_MIXED.format(why=why))


def _opset(model: onnx.ModelProto) -> int:
    """The ai.onnx opset the graph declares."""
    return next(
        (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1
    )


def _judge(name: str, value: onnx.ValueInfoProto | None, node: onnx.NodeProto) -> str | None:
    """Why the tensor ``name`` that ``node`` produces makes the graph sandboxed, or None."""
    where = f"tensor {_text(name)} (output of {_node_text(node)})"
    if value is not None and not value.type.HasField("tensor_type"):
        return f"{where} is not a tensor"
    dims = read_dims(value)
    if dims is None:
        return f"the rank of {where} is unknown: its shape may depend on input values"
    if None in dims:
        return (
            f"the shape of {where} depends on input values (or on arithmetic ONNX shape "
            "inference cannot follow: constant-fold the graph)"
        )
    if batch_count(dims) > 1:
        return (
            f"{where} has the batch dimension {batch_count(dims)} times: its size grows "
            "faster than the number of rows"
        )
    return None


def _judge_output(inferred: onnx.ValueInfoProto, declared: onnx.ValueInfoProto) -> GraphClass:
    dims = read_dims(inferred)
    if dims is None or len(dims) != 2 or dims[0] != BATCH or not isinstance(dims[1], int):
        return _sandboxed(
            f"output {_text(inferred.name)} is not inferred as [batch, width] (rows in, "
            "one output row per input row)"
        )
    shape = declared.type.tensor_type.shape
    declared_width = shape.dim[1].dim_value if len(shape.dim) == 2 else 0
    if declared_width and declared_width != dims[1]:
        return _sandboxed(
            f"output {_text(inferred.name)} declares {declared_width} columns but the graph "
            f"computes {dims[1]}"
        )
    return GraphClass(bounded=True, reason=BOUNDED_REASON)

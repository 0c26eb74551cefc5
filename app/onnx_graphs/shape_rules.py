"""Shapes ONNX's own inference leaves unknown, worked out by rules that hold whatever the
input's values (``app.onnx_graphs.classify`` adds what they find and infers again).

Dimensions are read as a positive size, a batch symbol, or unknown. The batch symbol is
``kiln_batch`` (the input's first dimension) or ``kiln_batch*k`` (k rows per input row: a
reshape that folds a fixed axis into the batch, as multi-head attention does). The rules:

- Reshape keeps its element count, so one unknown target dimension follows from the others
  (ONNX leaves ``-1`` unknown whenever the input has a symbolic dimension);
- Resize by a constant scale of exactly 1 keeps a batch dimension (ONNX cannot multiply a
  symbol by 1.0), and Tile by constant repeats multiplies each dimension;
- GroupNormalization keeps its input's shape (ONNX infers it through a function body that
  reshapes by ``-1``);
- the ``ai.onnx.ml`` operators whose opset-1 schemas infer no shape (tree ensembles, linear
  regressors, scalers, ...) shape their outputs from their input's rows and attributes, as
  onnxruntime does."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import onnx
from onnx import TensorProto, helper, numpy_helper

BATCH = "kiln_batch"  # the symbol the input's first dimension is given
ML = "ai.onnx.ml"
_SMALL = 16  # elements of a constant a rule may read (a scale per axis)

Dim = int | str | None  # a positive size, a batch symbol, or None: unknown
Dims = tuple[Dim, ...]
Constant = Callable[[str], list[float] | None]  # a small constant's values, by tensor name
Rule = Callable[[onnx.NodeProto, list[Dims | None], list[Dims | None], Constant], list[Dims | None]]


def batch_symbol(multiple: int) -> str:
    """The symbol of ``multiple`` rows per input row."""
    return BATCH if multiple == 1 else f"{BATCH}*{multiple}"


def _multiple(symbol: str) -> int | None:
    if symbol == BATCH:
        return 1
    head, _, tail = symbol.partition("*")
    return int(tail) if head == BATCH and tail.isdigit() and int(tail) > 0 else None


def read_dims(value: onnx.ValueInfoProto | None) -> Dims | None:
    """A tensor's dimensions as inferred (None for each unknown one), or None: no known rank
    (or not a tensor)."""
    if value is None or not value.type.HasField("tensor_type"):
        return None
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value if dim.dim_value > 0 else None)
        else:
            dims.append(dim.dim_param if _multiple(dim.dim_param) else None)
    return tuple(dims)


def batch_count(dims: Dims) -> int:
    """How many batch symbols ``dims`` holds (more than one: it grows as rows squared)."""
    return sum(isinstance(dim, str) for dim in dims)


def known(dims: Dims | None) -> bool:
    return dims is not None and None not in dims


def resolved(dims: Dims | None) -> bool:
    """Known, and linear in the rows: no unknown dimension, at most one batch symbol."""
    return dims is not None and None not in dims and batch_count(dims) <= 1


def _split(dims: Dims) -> tuple[int, int]:
    """Rows per input row of the batch symbol in ``dims`` (0: none), and the product of
    the fixed sizes."""
    multiple = sum(_multiple(dim) or 0 for dim in dims if isinstance(dim, str))
    return multiple, math.prod(dim for dim in dims if isinstance(dim, int))


def _reshape(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], _: Constant
) -> list[Dims | None]:
    """One unknown target dimension is the input's element count over the others'."""
    source, target = inputs[0], outputs[0] if outputs else None
    if not resolved(source) or target is None or target.count(None) != 1 or batch_count(target) > 1:
        return [None]
    assert source is not None
    (rows_in, count_in), (rows_out, count_out) = _split(source), _split(target)
    missing: Dim
    if bool(rows_in) == bool(rows_out):  # the batch is on both sides, or on neither
        numerator, denominator = count_in * max(rows_in, 1), count_out * max(rows_out, 1)
        if numerator % denominator:
            return [None]
        missing = numerator // denominator
    elif rows_in and (rows_in * count_in) % count_out == 0:
        missing = batch_symbol(rows_in * count_in // count_out)
    else:  # the batch divided by a size: not a shape these rules can name
        return [None]
    return [tuple(missing if dim is None else dim for dim in target)]


def _resize(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], constant: Constant
) -> list[Dims | None]:
    """A batch dimension scaled by exactly 1 (a constant scale) stays the batch."""
    source, target = inputs[0], outputs[0] if outputs else None
    if source is None or target is None or len(source) != len(target):
        return [None]
    scales_name = node.input[1] if len(node.input) == 2 else (node.input[2:3] or [""])[0]
    scales = constant(scales_name) if scales_name else None
    axes = _attribute(node, "axes")
    axes = list(axes) if isinstance(axes, Sequence) else list(range(len(source)))
    if scales is None or len(scales) != len(axes):
        return [None]
    per_axis = dict.fromkeys(range(len(source)), 1.0)
    per_axis.update(
        (int(axis) % len(source), scale) for axis, scale in zip(axes, scales, strict=True)
    )
    dims = list(target)
    for axis, dim in enumerate(target):
        if dim is None:
            if not isinstance(source[axis], str) or per_axis[axis] != 1.0:
                return [None]
            dims[axis] = source[axis]
    return [tuple(dims)]


def _tile(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], constant: Constant
) -> list[Dims | None]:
    """Tile by constant repeats: each dimension times its repeat (ONNX leaves a symbolic one
    unknown, even repeated once)."""
    source = inputs[0]
    repeats = constant(node.input[1]) if len(node.input) > 1 else None
    if source is None or repeats is None or len(repeats) != len(source):
        return [None]
    dims: list[Dim] = []
    for dim, repeat in zip(source, repeats, strict=True):
        times = int(repeat)
        if times != repeat or times < 1:
            return [None]
        if isinstance(dim, int):
            dims.append(dim * times)
        else:  # the input is resolved: a batch symbol
            dims.append(batch_symbol((_multiple(str(dim)) or 1) * times))
    return [tuple(dims)]


def _attribute(node: onnx.NodeProto, name: str) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _rows(inputs: list[Dims | None]) -> Dim:
    source = inputs[0]
    return source[0] if source is not None and len(source) == 2 else None


def _same_shape(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], _: Constant
) -> list[Dims | None]:
    """Operators whose output is shaped as their input: GroupNormalization (a function
    whose body ONNX cannot infer on a symbolic batch) and element-wise ai.onnx.ml ones."""
    return [inputs[0]]


def _count(*names: str, default: int = 0) -> Callable[[onnx.NodeProto], int]:
    """The first of ``names`` present on a node: a list's length, or an int's value."""

    def count(node: onnx.NodeProto) -> int:
        for name in names:
            value = _attribute(node, name)
            if isinstance(value, Sequence) and not isinstance(value, str | bytes):
                return len(value)
            if isinstance(value, int):
                return value
        return default

    return count


def _per_row(width: Callable[[onnx.NodeProto], int], labels: bool) -> Rule:
    """An ai.onnx.ml model on [N, features]: [N] labels (classifiers) and [N, width]."""

    def rule(
        node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], _: Constant
    ) -> list[Dims | None]:
        rows, columns = _rows(inputs), width(node)
        if rows is None or columns <= 0:
            return [None, None]
        scores: Dims = (rows, columns)
        return [(rows,), scores] if labels else [scores]

    return rule


def _vectorized(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], _: Constant
) -> list[Dims | None]:
    """FeatureVectorizer: [N, the sum of the inputs' declared widths]."""
    widths, rows = _attribute(node, "inputdimensions"), _rows(inputs)
    if rows is None or not isinstance(widths, Sequence):
        return [None]
    for dims in inputs:
        if dims is None or not resolved(dims) or len(dims) != 2 or dims[0] != rows:
            return [None]
    total = sum(int(width) for width in widths)
    return [(rows, total)] if total > 0 else [None]


def _extracted(
    node: onnx.NodeProto, inputs: list[Dims | None], outputs: list[Dims | None], _: Constant
) -> list[Dims | None]:
    """ArrayFeatureExtractor (as onnxruntime shapes it): X's shape with its last dimension
    replaced by the number of indices, or [1, indices] for a vector X."""
    source, indices = inputs[0], inputs[1] if len(inputs) > 1 else None
    if not source or not resolved(indices):
        return [None]
    assert indices is not None
    rows, count = _split(indices)
    taken: Dim = batch_symbol(rows * count) if rows else count
    return [(1, taken) if len(source) == 1 else (*source[:-1], taken)]


RULES: Mapping[tuple[str, str], Rule] = MappingProxyType(
    {
        ("", "Reshape"): _reshape,
        ("", "Resize"): _resize,
        ("", "Tile"): _tile,
        ("", "GroupNormalization"): _same_shape,
        (ML, "TreeEnsembleClassifier"): _per_row(
            _count("classlabels_int64s", "classlabels_strings"), labels=True
        ),
        (ML, "TreeEnsembleRegressor"): _per_row(_count("n_targets", default=1), labels=False),
        (ML, "LinearRegressor"): _per_row(_count("targets", default=1), labels=False),
        (ML, "FeatureVectorizer"): _vectorized,
        (ML, "ArrayFeatureExtractor"): _extracted,
        **{(ML, op): _same_shape for op in ("Normalizer", "Scaler", "Imputer", "Binarizer")},
    }
)


def small_constants(graph: onnx.GraphProto) -> Constant:
    """Reads the values of initializers and Constant nodes of at most _SMALL elements."""
    overridable = {value.name for value in graph.input}  # a feed could replace these
    tensors = {
        tensor.name: tensor for tensor in graph.initializer if tensor.name not in overridable
    }
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or not node.output:
            continue
        for attribute in node.attribute:
            if attribute.name == "value" and attribute.HasField("t"):
                tensors[node.output[0]] = attribute.t
            elif attribute.name in ("value_floats", "value_ints"):
                listed = list((attribute.floats or attribute.ints)[: _SMALL + 1])
                tensors[node.output[0]] = helper.make_tensor(
                    "", TensorProto.DOUBLE, [len(listed)], listed
                )

    def read(name: str) -> list[float] | None:
        tensor = tensors.get(name)
        if tensor is None or math.prod(tensor.dims) > _SMALL:
            return None
        try:
            return [float(value) for value in numpy_helper.to_array(tensor).reshape(-1)]
        except (ValueError, TypeError):
            return None

    return read


def resolve(
    graph: onnx.GraphProto, values: Mapping[str, onnx.ValueInfoProto]
) -> list[onnx.ValueInfoProto]:
    """Value infos for the node outputs that ``values`` (ONNX's inference) leaves unknown and
    a rule works out from the node's inputs."""
    constant = small_constants(graph)
    added = []
    for node in graph.node:
        domain = "" if node.domain == "ai.onnx" else node.domain
        rule = RULES.get((domain, node.op_type))
        outputs = [read_dims(values.get(name)) for name in node.output]
        if rule is None or all(
            known(dims) for name, dims in zip(node.output, outputs, strict=True) if name
        ):
            continue
        inputs = [read_dims(values.get(name)) if name else None for name in node.input]
        if not inputs or not resolved(inputs[0]):
            continue
        found = rule(node, inputs, outputs, constant)
        for name, dims, before in zip(node.output, found, outputs, strict=False):
            value = values.get(name)
            if not name or value is None or not value.type.HasField("tensor_type"):
                continue
            if dims is None or None in dims or known(before):
                continue
            elem_type = value.type.tensor_type.elem_type
            added.append(helper.make_tensor_value_info(name, elem_type, list(dims)))
    return added

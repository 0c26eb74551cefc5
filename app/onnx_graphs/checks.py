"""Checks of an uploaded ONNX model as data, before anything executes it.

Nothing here runs the graph or hands it to onnxruntime: the protobuf is decoded, every
tensor anywhere in it is checked for external data, and the declared signature is bounded,
so a hostile file cannot make the gateway read a file or allocate by a size it declares.
The graph then runs only in the probe subprocess (``app.registry.probe``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from onnx import TensorProto

from app.core.errors import InvalidInput

MAX_LABELS = 1000
MAX_FEATURE_ELEMENTS = 1_000_000  # values in one input row
MAX_INPUT_RANK = 4  # batch plus at most three row dimensions (an image: C, H, W)
_FLOAT = TensorProto.FLOAT


@dataclass(frozen=True)
class DeclaredSignature:
    """The one input and first output a model declares, with their fixed row shapes."""

    input_name: str
    row_shape: tuple[int, ...]
    output_name: str
    width: int
    n_params: int


def decode_model(data: bytes) -> onnx.ModelProto:
    """The protobuf, or InvalidInput; decoding parses data only (no graph runs)."""
    if not data:
        raise InvalidInput("file is empty: expected an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise InvalidInput("file is not an ONNX model (or is truncated)") from None
    if not model.graph.node:
        raise InvalidInput("file is not an ONNX model (or is truncated): the graph is empty")
    return model


def _is_repeated(descriptor: FieldDescriptor) -> bool:
    """Whether a field holds a list: ``is_repeated`` on protobuf 6.31 and later (7 dropped
    ``label``), the label on the releases before it."""
    if hasattr(descriptor, "is_repeated"):
        return bool(descriptor.is_repeated)
    return bool(descriptor.label == FieldDescriptor.LABEL_REPEATED)


def _messages(message: Message) -> Iterator[Message]:
    """``message`` and every message nested in it, at any depth, whatever the field:
    graphs of If/Loop/Scan, local functions, sparse tensors, training info, attributes."""
    stack = [message]
    while stack:
        current = stack.pop()
        yield current
        for descriptor, value in current.ListFields():
            if descriptor.message_type is None:
                continue
            if _is_repeated(descriptor):
                stack.extend(value)
            else:
                stack.append(value)


def refuse_external_data(model: onnx.ModelProto) -> None:
    """InvalidInput if any tensor anywhere in the model points outside the file."""
    for message in _messages(model):
        if not isinstance(message, TensorProto):
            continue
        if message.data_location == TensorProto.EXTERNAL or len(message.external_data):
            name = message.name[:80] or "(unnamed)"
            raise InvalidInput(
                f"model references external data (tensor {name!r}); upload a "
                "single self-contained .onnx file"
            )


def _fixed_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    dims = value.type.tensor_type.shape.dim
    return [
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None for dim in dims
    ]


def _shape_text(value: onnx.ValueInfoProto) -> str:
    dims = value.type.tensor_type.shape.dim
    shown = [
        str(dim.dim_value) if dim.HasField("dim_value") else (dim.dim_param[:20] or "?")
        for dim in dims
    ]
    return "[" + ", ".join(shown) + "]"


def declared_signature(model: onnx.ModelProto) -> DeclaredSignature:
    """The input and output the graph declares, refused unless their sizes are bounded."""
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise InvalidInput(f"model has {len(inputs)} inputs; exactly one is supported")
    source = inputs[0]
    name = source.name[:80]
    if source.type.tensor_type.elem_type != _FLOAT:
        raise InvalidInput(f"input {name!r} is not a float32 tensor; float32 is supported")
    if not source.type.tensor_type.HasField("shape"):
        raise InvalidInput(f"input {name!r} declares no shape; expected [batch, features]")
    dims = _fixed_dims(source)[1:]
    if not dims or None in dims or len(dims) >= MAX_INPUT_RANK:
        raise InvalidInput(
            f"input {name!r} has shape {_shape_text(source)}: every dimension "
            "after the batch must be a fixed positive size (at most "
            f"{MAX_INPUT_RANK - 1} of them)"
        )
    row_shape = tuple(int(dim) for dim in dims if dim is not None)
    if math.prod(row_shape) > MAX_FEATURE_ELEMENTS:
        raise InvalidInput(
            f"input {name!r} has shape {_shape_text(source)}: "
            f"{math.prod(row_shape)} values per row; at most "
            f"{MAX_FEATURE_ELEMENTS} are supported"
        )
    if not graph.output:
        raise InvalidInput("model declares no outputs")
    output = graph.output[0]
    out_name = output.name[:80]
    if output.type.tensor_type.elem_type != _FLOAT:
        raise InvalidInput(
            f"output {out_name!r} is not a float32 tensor; the first output is the one served "
            "and must be float32 scores or values (a scikit-learn classifier converted with "
            "skl2onnx puts its label first: convert it with options {'zipmap': False} and "
            "remove the label output, so the probabilities come first)"
        )
    out_dims = _fixed_dims(output)
    if len(out_dims) != 2 or out_dims[1] is None:
        raise InvalidInput(
            f"output {out_name!r} has shape {_shape_text(output)}; expected "
            "[batch, classes or 1] with a fixed second dimension"
        )
    width = int(out_dims[1])
    if width > MAX_LABELS:
        raise InvalidInput(
            f"output {out_name!r} has {width} columns; at most {MAX_LABELS} "
            "classes (or 1 regression value) are supported"
        )
    n_params = sum(math.prod(tensor.dims) for tensor in graph.initializer)
    return DeclaredSignature(
        input_name=source.name,
        row_shape=row_shape,
        output_name=output.name,
        width=width,
        n_params=n_params,
    )

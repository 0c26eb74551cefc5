"""The preprocessing as ONNX, put in front of a network graph: one input per source column
([n, 1] float for numbers, string for text and dates), the same steps as
``app.preprocessing.encode`` (fill, missing indicator, one-hot with an 'other' slot,
frequencies, date parts), then the network. Standard operators only (opset 20 and ai.onnx.ml
LabelEncoder), so the file runs in any onnxruntime without ModelKiln."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.contracts.encoding import (
    DATETIME_PATTERN,
    CategoricalColumn,
    DatetimeColumn,
    NumericColumn,
    TableEncoding,
)
from app.core.errors import BrokenInvariant
from app.preprocessing.encode import MONTH_OFFSETS, UNKNOWN_CODE, Raw, feeds, slot_codes

OPSET = 20  # StringSplit, StringConcat and RegexFullMatch
ML_OPSET = 4
FEATURES_KEY = "modelkiln.features"  # metadata: the tensor where the network starts


def _prefix(base: str, names: set[str]) -> str:
    """``base`` (e.g. 'pp/'), lengthened until no column name starts with it."""
    prefix = base
    while any(name.startswith(prefix) for name in names):
        prefix = "_" + prefix
    return prefix


class _Builder:
    """Nodes and constants under names no column can have."""

    def __init__(self, prefix: str) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self.count = 0
        self.prefix = prefix
        self.features = f"{prefix}features"

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}{self.count}"

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        name = self.name("c")
        if dtype is object:
            text: list[Any] = [str(value).encode()]
            self.constants.append(helper.make_tensor(name, TensorProto.STRING, [], text))
        else:
            self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(
        self, kind: str, inputs: list[str], outputs: int = 1, domain: str = "", **attributes: Any
    ) -> list[str]:
        names = [self.name(kind.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(kind, inputs, names, domain=domain, **attributes))
        return names

    def one(self, kind: str, *inputs: str, **attributes: Any) -> str:
        return self.op(kind, list(inputs), **attributes)[0]

    def part(self, split: str, index: int) -> str:
        """Element ``index`` of the last axis of a [n, 1, k] split, as [n, 1]."""
        taken = self.one("Gather", split, self.const(index, np.int64), axis=2)
        return taken

    def split(self, text: str, delimiter: str, maxsplit: int) -> str:
        """``text`` + delimiter split ``maxsplit`` times: always maxsplit + 1 parts."""
        padded = self.one("StringConcat", text, self.const(delimiter, object))
        return self.op("StringSplit", [padded], outputs=2, delimiter=delimiter, maxsplit=maxsplit)[
            0
        ]


def _numeric(graph: _Builder, column: NumericColumn, source: str) -> list[str]:
    gaps = graph.one("IsNaN", source)
    filled = graph.one("Where", gaps, graph.const([[column.fill]]), source)
    return [filled] + ([graph.one("Cast", gaps, to=TensorProto.FLOAT)] if column.indicator else [])


def _categorical(graph: _Builder, column: CategoricalColumn, source: str) -> list[str]:
    codes = slot_codes(column)
    slot = graph.one(
        "LabelEncoder",
        source,
        domain="ai.onnx.ml",
        keys_strings=list(codes),
        values_int64s=list(codes.values()),
        default_int64=column.other_slot,
    )
    hot = graph.one("Equal", slot, graph.const([list(range(column.slots))], np.int64))
    blocks = [graph.one("Cast", hot, to=TensorProto.FLOAT)]
    if column.frequencies is not None:
        blocks.append(
            graph.one(
                "LabelEncoder",
                source,
                domain="ai.onnx.ml",
                keys_strings=list(column.frequencies),
                values_floats=list(column.frequencies.values()),
                default_float=0.0,
            )
        )
    if column.coded:
        code_of = column.codes()
        blocks.append(
            graph.one(
                "LabelEncoder",
                source,
                domain="ai.onnx.ml",
                keys_strings=list(code_of),
                values_floats=list(code_of.values()),
                default_float=UNKNOWN_CODE,
            )
        )
    return blocks


def _number(graph: _Builder, text: str) -> str:
    return graph.one("Cast", text, to=TensorProto.FLOAT)


def _datetime(graph: _Builder, column: DatetimeColumn, source: str) -> list[str]:
    valid = graph.one("RegexFullMatch", source, pattern=DATETIME_PATTERN)
    text = graph.one("Where", valid, source, graph.const(column.fill, object))
    ymd = graph.op("StringSplit", [text], outputs=2, delimiter="-", maxsplit=2)[0]
    year, month = _number(graph, graph.part(ymd, 0)), _number(graph, graph.part(ymd, 1))
    by_t = graph.split(graph.part(ymd, 2), "T", 1)  # '17T10:30' or '17 10:30' or '17'
    by_space = graph.split(graph.part(by_t, 0), " ", 1)
    day = _number(graph, graph.part(by_space, 0))
    # Sakamoto's weekday: (y + y//4 - y//100 + y//400 + offset[month] + day) mod 7, with y
    # one less in January and February; exact in float32 for any four-digit year.
    early = graph.one("Cast", graph.one("Less", month, graph.const(3.0)), to=TensorProto.FLOAT)
    shifted = graph.one("Sub", year, early)

    def floor_div(value: str, by: float) -> str:
        return graph.one("Floor", graph.one("Div", value, graph.const(by)))

    month_index = graph.one(
        "Cast",
        graph.one(
            "Clip", graph.one("Sub", month, graph.const(1.0)), graph.const(0.0), graph.const(11.0)
        ),
        to=TensorProto.INT64,
    )
    offset = graph.one(
        "Gather", graph.const(np.asarray(MONTH_OFFSETS, dtype=np.float32)), month_index
    )
    total = shifted
    for term in (floor_div(shifted, 4.0), offset, day):
        total = graph.one("Add", total, term)
    for term in (floor_div(shifted, 100.0),):
        total = graph.one("Sub", total, term)
    total = graph.one("Add", total, floor_div(shifted, 400.0))
    weekday = graph.one("Mod", total, graph.const(7.0), fmod=1)
    blocks = [year, month, day, weekday]
    if column.hour:
        time = graph.one("StringConcat", graph.part(by_t, 1), graph.part(by_space, 1))
        hours = graph.part(graph.split(time, ":", 1), 0)
        empty = graph.one("Equal", hours, graph.const("", object))
        blocks.append(_number(graph, graph.one("Where", empty, graph.const("0", object), hours)))
    if column.indicator:
        blocks.append(graph.one("Cast", graph.one("Not", valid), to=TensorProto.FLOAT))
    return blocks


def _zeros(graph: _Builder, like: str, width: int) -> str:
    rows = graph.one(
        "Slice", graph.one("Shape", like), graph.const([0], np.int64), graph.const([1], np.int64)
    )
    shape = graph.one("Concat", rows, graph.const([width], np.int64), axis=0)
    return graph.one(
        "ConstantOfShape", shape, value=numpy_helper.from_array(np.zeros(1, dtype=np.float32))
    )


def preprocessing(encoding: TableEncoding, used: set[str]) -> tuple[_Builder, list[Any]]:
    """Nodes that turn the ``used`` source columns into the features; columns not used
    contribute zeros of their width (the network never reads them) and are not inputs."""
    graph = _Builder(_prefix("pp/", {column.name for column in encoding.columns}))
    inputs = [
        helper.make_tensor_value_info(
            column.name,
            TensorProto.FLOAT if column.kind == "numeric" else TensorProto.STRING,
            ["batch", 1],
        )
        for column in encoding.columns
        if column.name in used
    ]
    if not (inputs):
        raise BrokenInvariant("at least one column is used")
    blocks: list[str] = []
    for column in encoding.columns:
        if column.name not in used:
            blocks.append(_zeros(graph, inputs[0].name, column.width))
        elif isinstance(column, NumericColumn):
            blocks += _numeric(graph, column, column.name)
        elif isinstance(column, CategoricalColumn):
            blocks += _categorical(graph, column, column.name)
        else:
            blocks += _datetime(graph, column, column.name)
    graph.nodes.append(helper.make_node("Concat", blocks, [graph.features], axis=1))
    return graph, inputs


def attach(
    network: bytes, encoding: TableEncoding, *, used: set[str], input_name: str = "input"
) -> bytes:
    """The network graph (whose input ``input_name`` takes the features) behind the
    preprocessing of ``encoding``: one ONNX file from raw columns to the network's output."""
    model = onnx.load_from_string(network)
    front, inputs = preprocessing(encoding, used)
    graph = model.graph
    public = {value.name for value in graph.output}
    clash = public.intersection(column.name for column in encoding.columns)
    if clash:
        raise ValueError(f"a column has the name of the model's output: {sorted(clash)}")
    network_prefix = _prefix("net/", {column.name for column in encoding.columns})

    def inside(name: str) -> str:
        """The network's own tensors, renamed apart from the column names."""
        if name == input_name:
            return front.features
        return name if not name or name in public else f"{network_prefix}{name}"

    for node in graph.node:
        node.input[:] = [inside(name) for name in node.input]
        node.output[:] = [inside(name) for name in node.output]
    for tensor in graph.initializer:
        tensor.name = inside(tensor.name)
    nodes = [*front.nodes, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(front.constants)
    kept = [value for value in graph.input if value.name != input_name]
    del graph.input[:]
    graph.input.extend([*inputs, *kept])
    versions = {entry.domain or "": entry.version for entry in model.opset_import}
    versions[""] = max(versions.get("", OPSET), OPSET)
    versions["ai.onnx.ml"] = max(versions.get("ai.onnx.ml", ML_OPSET), ML_OPSET)
    del model.opset_import[:]
    model.opset_import.extend(
        helper.make_opsetid(domain, version) for domain, version in versions.items()
    )
    model.ir_version = max(model.ir_version, 9)
    helper.set_model_props(model, {FEATURES_KEY: front.features})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def detach(served: bytes, encoding: TableEncoding, *, input_name: str = "input") -> bytes:
    """The network part of a file made by ``attach``: features in (``input_name``,
    [batch, width]), the same outputs; what compression works on."""
    model = onnx.load_from_string(served)
    features = next(prop.value for prop in model.metadata_props if prop.key == FEATURES_KEY)
    prefix = features.removesuffix("features")
    graph = model.graph
    nodes = [
        node for node in graph.node if not any(name.startswith(prefix) for name in node.output)
    ]
    for node in nodes:
        node.input[:] = [input_name if name == features else name for name in node.input]
    del graph.node[:]
    graph.node.extend(nodes)
    constants = [tensor for tensor in graph.initializer if not tensor.name.startswith(prefix)]
    del graph.initializer[:]
    graph.initializer.extend(constants)
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", encoding.width])
    )
    del model.metadata_props[:]
    return model.SerializeToString()


def with_rows(
    network: bytes, encoding: TableEncoding, raw: Raw, used: set[str] | None = None
) -> tuple[bytes, dict[str, np.ndarray]]:
    """The served file for a network and onnxruntime feeds of ``raw`` rows for it: what
    size and latency are measured on."""
    columns = encoding.sources_of(None) if used is None else used
    return attach(network, encoding, used=columns), feeds(encoding, raw, columns)

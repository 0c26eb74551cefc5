"""Weights stored as small indices into a codebook, so the file really is smaller: each
weight tensor becomes packed index bits (1, 2, 4 or 8 per weight) plus its codebook (and a
per-channel scale), and a few graph nodes decode it back to float32 when onnxruntime loads
the model (the nodes have constant inputs only, so they are folded once, at load).

A tensor that is mostly zeros (pruned before) is stored sparse instead, as Deep
Compression stores it: for every non-zero weight, the gap since the previous one (4 or 8
bits; a gap too long for them takes a filler entry that decodes to zero) and its codebook
index. Whichever of dense and sparse is smaller is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INDEX_BITS = (1, 2, 4, 8)
GAP_BITS = (4, 8)


@dataclass(frozen=True)
class CodedWeight:
    """A weight tensor as ``scale * codebook[indices]``: ``indices`` has the tensor's shape,
    ``scale`` (or None) has one value per slice along ``axis`` (the output channels)."""

    indices: np.ndarray
    codebook: np.ndarray
    scale: np.ndarray | None = None
    axis: int = 0

    def decoded(self) -> np.ndarray:
        values = self.codebook.astype(np.float32)[self.indices]
        if self.scale is None:
            return values
        shape = [1] * values.ndim
        shape[self.axis] = -1
        return values * self.scale.astype(np.float32).reshape(shape)


def bits_for(count: int) -> int:
    """The fewest bits (of 1, 2, 4, 8) that index ``count`` codebook entries."""
    for bits in INDEX_BITS:
        if count <= 1 << bits:
            return bits
    raise ValueError(f"a codebook of {count} values needs more than 8 bits per index")


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers below 2**bits, ``8 // bits`` to a byte (lowest bits first)."""
    per_byte = 8 // bits
    flat = values.astype(np.uint8).ravel()
    padded = np.zeros(-(-len(flat) // per_byte) * per_byte, dtype=np.uint8)
    padded[: len(flat)] = flat
    groups = padded.reshape(-1, per_byte).astype(np.uint16)
    shifts = (np.arange(per_byte) * bits).astype(np.uint16)
    return (groups << shifts).sum(axis=1).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of ``pack`` (what the graph's decode nodes compute)."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    parts = (packed[:, None] >> shifts[None, :]) & ((1 << bits) - 1)
    return parts.reshape(-1)[:count].astype(np.int64)


def sparse_entries(indices: np.ndarray, zero: int, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, codebook indices) of the entries that are not ``zero``, with fillers (index
    ``zero``) wherever a gap is longer than ``gap_bits`` can say."""
    positions = np.flatnonzero(indices.ravel() != zero)
    longest = (1 << gap_bits) - 1
    gaps: list[int] = []
    codes: list[int] = []
    previous = -1
    flat = indices.ravel()
    for position in positions.tolist():
        gap = position - previous - 1
        while gap > longest:  # a filler lands on a zero weight and writes zero there
            gaps.append(longest)
            codes.append(zero)
            gap -= longest + 1
        gaps.append(gap)
        codes.append(int(flat[position]))
        previous = position
    return np.asarray(gaps, dtype=np.int64), np.asarray(codes, dtype=np.int64)


class _Graph:
    """Collects the initializers and nodes that decode the coded tensors, with short names
    (they are stored in the file too) and the shift constants shared between tensors."""

    def __init__(self) -> None:
        self.initializers: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.shared: dict[str, str] = {}
        self.prefix = ""

    def constant(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}{name}"
        self.initializers.append(numpy_helper.from_array(value, full))
        return full

    def common(self, name: str, value: np.ndarray) -> str:
        """A constant every coded tensor may use, stored once."""
        if name not in self.shared:
            self.shared[name] = f"k.{name}"
            self.initializers.append(numpy_helper.from_array(value, self.shared[name]))
        return self.shared[name]

    def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        output = f"{self.prefix}{name}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def unpacked(self, name: str, values: np.ndarray, bits: int) -> str:
        """Nodes giving ``values`` (int64, 1-D) back from their packed bytes: one shift of
        the [bytes, 1] column by [0, bits, 2 bits, ...], the remainder below 2**bits, read
        row by row."""
        packed = pack(values, bits)
        if bits == 8:
            return self.node(
                "Cast", [self.constant(name, packed)], f"{name}i", to=TensorProto.INT64
            )
        column = self.constant(name, packed.reshape(-1, 1))
        per_byte = 8 // bits
        shifts = self.common(
            f"s{bits}", (np.arange(per_byte) * bits).astype(np.uint8).reshape(1, -1)
        )
        moved = self.node("BitShift", [column, shifts], f"{name}s", direction="RIGHT")
        parts = self.node(
            "Mod", [moved, self.common(f"m{bits}", np.array(1 << bits, dtype=np.uint8))], f"{name}m"
        )
        flat = self.node(
            "Reshape", [parts, self.common("flat", np.array([-1], np.int64))], f"{name}f"
        )
        kept = self.node(
            "Slice",
            [
                flat,
                self.common("zero", np.array([0], np.int64)),
                self.constant(f"{name}n", np.array([len(values)], np.int64)),
            ],
            f"{name}k",
        )
        return self.node("Cast", [kept], f"{name}i", to=TensorProto.INT64)


def _dense_bytes(coded: CodedWeight, bits: int) -> int:
    return -(-coded.indices.size * bits // 8)


def _sparse_plan(coded: CodedWeight, bits: int) -> tuple[int, int] | None:
    """(gap bits, bytes) of the smaller sparse form, or None without a zero in the book."""
    zeros = np.flatnonzero(coded.codebook == 0)
    if not len(zeros):
        return None
    best: tuple[int, int] | None = None
    for gap_bits in GAP_BITS:
        gaps, _ = sparse_entries(coded.indices, int(zeros[0]), gap_bits)
        size = -(-len(gaps) * gap_bits // 8) + -(-len(gaps) * bits // 8)
        if best is None or size < best[1]:
            best = (gap_bits, size)
    return best


@dataclass
class PackedForm:
    """How one tensor was packed: bits per index, bits per gap (0: dense, every index
    stored), the entries stored and the bytes they take (with a scale per channel)."""

    bits: int
    gap_bits: int
    entries: int
    bytes: int


def decode_nodes(graph: _Graph, number: int, name: str, coded: CodedWeight) -> PackedForm:
    """Add to ``graph`` the initializers and nodes whose last output is ``name``, the
    decoded tensor; return what was chosen (bits, form, bytes)."""
    graph.prefix = f"c{number}."
    bits = bits_for(len(coded.codebook))
    codebook = graph.constant("b", coded.codebook.astype(np.float32))
    count = coded.indices.size
    dense = _dense_bytes(coded, bits)
    sparse = _sparse_plan(coded, bits) if count >= 256 else None
    if sparse is not None and sparse[1] < dense:
        gap_bits = sparse[0]
        zero = int(np.flatnonzero(coded.codebook == 0)[0])
        gaps, codes = sparse_entries(coded.indices, zero, gap_bits)
        one = graph.common("one", np.array(1, dtype=np.int64))
        steps = graph.node("Add", [graph.unpacked("g", gaps, gap_bits), one], "st")
        ends = graph.node("CumSum", [steps, graph.common("axis", np.array(0, np.int64))], "e")
        positions = graph.node("Sub", [ends, one], "p")
        values = graph.node("Gather", [codebook, graph.unpacked("x", codes, bits)], "v", axis=0)
        empty = graph.node(
            "ConstantOfShape",
            [graph.constant("n", np.array([count], dtype=np.int64))],
            "z",
            value=numpy_helper.from_array(np.array([0.0], dtype=np.float32)),
        )
        flat = graph.node("ScatterElements", [empty, positions, values], "w", axis=0)
        chosen = PackedForm(bits=bits, gap_bits=gap_bits, entries=len(gaps), bytes=sparse[1])
    else:
        flat = graph.node(
            "Gather", [codebook, graph.unpacked("x", coded.indices.ravel(), bits)], "w", axis=0
        )
        chosen = PackedForm(bits=bits, gap_bits=0, entries=count, bytes=dense)
    shape = graph.constant("r", np.array(coded.indices.shape, dtype=np.int64))
    if coded.scale is None:
        graph.nodes.append(helper.make_node("Reshape", [flat, shape], [name]))
    else:
        shaped = graph.node("Reshape", [flat, shape], "u")
        broadcast = [1] * coded.indices.ndim
        broadcast[coded.axis] = -1
        scale = graph.constant("a", coded.scale.astype(np.float32).reshape(broadcast))
        graph.nodes.append(helper.make_node("Mul", [shaped, scale], [name]))
        chosen.bytes += coded.scale.size * 4
    return chosen


def pack_weights(
    onnx_bytes: bytes, coded: dict[str, CodedWeight]
) -> tuple[bytes, dict[str, object]]:
    """Replace each named float initializer by its coded form; the rest is unchanged."""
    model = onnx.load_model_from_string(onnx_bytes)
    graph = model.graph
    kept = [tensor for tensor in graph.initializer if tensor.name not in coded]
    missing = set(coded) - {tensor.name for tensor in graph.initializer}
    if missing:
        raise ValueError(f"no initializers named {sorted(missing)}")
    decoding = _Graph()
    chosen = {
        name: decode_nodes(decoding, number, name, weight)
        for number, (name, weight) in enumerate(coded.items())
    }
    del graph.initializer[:]
    graph.initializer.extend([*kept, *decoding.initializers])
    ordered = [*decoding.nodes, *graph.node]
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.checker.check_model(model)
    forms = [summary for summary in chosen.values()]
    return model.SerializeToString(), {
        "coded_tensors": len(coded),
        "index_bits": sorted({form.bits for form in forms}),
        "sparse_tensors": sum(1 for form in forms if form.gap_bits),
        "coded_bytes": sum(form.bytes for form in forms),
    }


def match_initializer(
    model: onnx.ModelProto, codebook: np.ndarray, indices: np.ndarray, used: set[str]
) -> tuple[str, CodedWeight] | None:
    """The exported initializer holding a layer's weight (as is, transposed, or scaled per
    output channel by a folded batch norm), coded with ``indices`` into ``codebook``."""
    for tensor in model.graph.initializer:
        if tensor.name in used or tensor.data_type != TensorProto.FLOAT:
            continue
        stored = numpy_helper.to_array(tensor)
        for axis, candidate in ((0, indices), (1, indices.T if indices.ndim == 2 else None)):
            if candidate is None or stored.shape != candidate.shape:
                continue
            plain = codebook.astype(np.float32)[candidate]
            scale = _channel_scale(stored, plain, axis)
            if scale is None:
                continue
            ones = np.allclose(scale, 1.0, rtol=1e-6, atol=0)
            return tensor.name, CodedWeight(
                candidate, codebook.astype(np.float32), None if ones else scale, axis
            )
    return None


def _channel_scale(stored: np.ndarray, plain: np.ndarray, axis: int) -> np.ndarray | None:
    """``s`` with ``stored == s * plain`` per slice along ``axis``, if there is one."""
    moved = np.moveaxis(stored, axis, 0).reshape(stored.shape[axis], -1)
    base = np.moveaxis(plain, axis, 0).reshape(plain.shape[axis], -1)
    scale = np.ones(moved.shape[0], dtype=np.float32)
    for row in range(moved.shape[0]):
        pivot = np.flatnonzero(base[row] != 0)
        if len(pivot):
            scale[row] = moved[row, pivot[0]] / base[row, pivot[0]]
    if not np.allclose(moved, scale[:, None] * base, rtol=1e-4, atol=1e-6):
        return None
    return scale

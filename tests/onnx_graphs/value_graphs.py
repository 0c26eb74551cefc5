"""For each allowed operator that takes a shape-like input, a graph whose shape input is
computed from the input's values (``BY_VALUES``): each must classify sandboxed, with the
tensor whose size then depends on the values, named ``shaped``, in the reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tests.onnx_graphs.graph import Body, Case, Graph
from tests.onnx_graphs.op_graphs import REDUCTIONS, image

SHAPED = "shaped"
BY_VALUES: dict[tuple[str, str], Case] = {}


def by_values(op: str) -> Callable[[Body], Body]:
    """Register a body whose ``op`` is sized by the input's values in BY_VALUES."""

    def register(body: Body) -> Body:
        BY_VALUES[("", op)] = Case(body)
        return body

    return register


@by_values("Reshape")
def _reshape_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Reshape", "x", g.by_values(after=(-1,)), out=SHAPED), 4


@by_values("Expand")
def _expand_by_values(g: Graph) -> tuple[str, int]:
    wide = g.op("Expand", g.reshape("x", -1, 1, 4), g.by_values(1, after=(4,)), out=SHAPED)
    return g.op("ReduceSum", wide, g.ints(1), keepdims=0), 4


@by_values("Tile")
def _tile_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Tile", "x", g.by_values(1), out=SHAPED), 4


@by_values("ConstantOfShape")
def _constant_of_shape_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Add", "x", g.op("ConstantOfShape", g.by_values(after=(4,)), out=SHAPED)), 4


@by_values("Pad")
def _pad_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Pad", "x", g.by_values(0, after=(0, 0)), out=SHAPED), 4


@by_values("Slice")
def _slice_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Slice", "x", g.ints(0), g.by_values(), g.ints(1), out=SHAPED), 4


@by_values("Resize")
def _resize_by_values(g: Graph) -> tuple[str, int]:
    sizes = g.by_values(after=(2,))
    return g.flat(g.op("Resize", image(g), "", "", sizes, axes=[2, 3], out=SHAPED)), 4


@by_values("Range")
def _range_by_values(g: Graph) -> tuple[str, int]:
    limit = g.op("Squeeze", g.value())
    counted = g.op("Range", g.const(0, np.int64), limit, g.const(1, np.int64), out=SHAPED)
    return g.op("Add", "x", g.floats(g.op("ReduceSum", counted, keepdims=1))), 4


@by_values("Split")
def _split_by_values(g: Graph) -> tuple[str, int]:
    sizes = g.op("Concat", g.value(), g.op("Sub", g.ints(4), g.value()), axis=0)
    return g.outputs("Split", "x", sizes, outs=2, axis=1, out=SHAPED)[0], 4


@by_values("Squeeze")
def _squeeze_by_values(g: Graph) -> tuple[str, int]:
    return g.op("Squeeze", g.reshape("x", -1, 1, 4), g.value(), out=SHAPED), 4


@by_values("Unsqueeze")
def _unsqueeze_by_values(g: Graph) -> tuple[str, int]:
    return g.flat(g.op("Unsqueeze", "x", g.value(), out=SHAPED)), 4


def _reduced_by_values(op: str) -> Body:
    return lambda g: (g.op(op, g.reshape("x", -1, 2, 2), g.value(), keepdims=1, out=SHAPED), 2)


BY_VALUES |= {("", op): Case(_reduced_by_values(op)) for op in REDUCTIONS}

"""A small ONNX graph under construction for the classification tests: float32 input ``x``
[batch, 4], output ``y`` [batch, WIDTH] (a MatMul of whatever tensor a case ends with)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH = 2
ML = "ai.onnx.ml"
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


class Graph:
    """A graph under construction: ``x`` [batch, 4] in, ``y`` [batch, WIDTH] out."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def const(self, values: Any, dtype: Any = np.float32) -> str:
        name = self.fresh()
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def op(self, op_type: str, *inputs: str, outs: int = 1, out: str = "", **attrs: Any) -> str:
        """Add a node (``domain`` passes as an attribute would); its first output."""
        domain = attrs.pop("domain", "")
        names = [out or self.fresh()] + [self.fresh() for _ in range(outs - 1)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain, **attrs))
        return names[0]

    def outputs(self, op_type: str, *inputs: str, outs: int, **attrs: Any) -> list[str]:
        self.op(op_type, *inputs, outs=outs, **attrs)
        return list(self.nodes[-1].output)

    def reshape(self, tensor: str, *dims: int) -> str:
        return self.op("Reshape", tensor, self.ints(*dims))

    def flat(self, tensor: str) -> str:
        return self.op("Flatten", tensor, axis=1)

    def floats(self, tensor: str) -> str:
        return self.op("Cast", tensor, to=FLOAT)

    def value(self) -> str:
        """An int64 [1] computed from the input's values: |x[0, 1]| + 1."""
        row = self.op("Gather", "x", self.const(0, np.int64), axis=0)
        picked = self.op("Gather", row, self.const([1], np.int64), axis=0)
        whole = self.op("Cast", self.op("Abs", picked), to=INT64)
        return self.op("Add", whole, self.ints(1))

    def by_values(self, *before: int, after: tuple[int, ...] = ()) -> str:
        """An int64 vector [*before, value, *after], the value from the input's values."""
        parts = [self.ints(*before)] if before else []
        parts += [self.value()] + ([self.ints(*after)] if after else [])
        return self.op("Concat", *parts, axis=0) if len(parts) > 1 else parts[0]

    def model(
        self, tensor: str, width: int, opset: int = 18, ml: int | None = None
    ) -> onnx.ModelProto:
        """y = tensor [batch, width] @ W, as a model."""
        weight = np.linspace(-1, 1, width * WIDTH).reshape(width, WIDTH)
        self.op("MatMul", tensor, self.const(weight), out="y")
        graph = helper.make_graph(
            self.nodes,
            "op",
            [helper.make_tensor_value_info("x", FLOAT, ["batch", 4])],
            [helper.make_tensor_value_info("y", FLOAT, ["batch", WIDTH])],
            self.initializers,
        )
        opsets = [helper.make_opsetid("", opset)]
        if ml is not None or any(node.domain == ML for node in self.nodes):
            opsets.append(helper.make_opsetid(ML, ml or 3))
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 10 if opset >= 21 else 9
        return model


Body = Callable[[Graph], tuple[str, int]]  # adds nodes; the tensor [batch, width] and width


@dataclass(frozen=True)
class Case:
    """A graph that uses one operator: its nodes, and the opsets it needs."""

    body: Body
    opset: int = 18
    ml: int | None = None

    def build(self) -> onnx.ModelProto:
        g = Graph()
        tensor, width = self.body(g)
        return g.model(tensor, width, self.opset, self.ml)

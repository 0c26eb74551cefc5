"""Uploads that pass the ONNX checks and run fine on ordinary rows, but whose running time
or memory depends on the input: what the gateway has to bound at serve time."""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

MANY_TRIPS = 10**12


def _model(nodes: list[NodeProto], initializers: list[TensorProto]) -> bytes:
    graph = helper.make_graph(
        nodes,
        "runaway",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def _looping(trigger: list[NodeProto], initializers: list[TensorProto]) -> bytes:
    """y = row sums, through a Loop of MANY_TRIPS iterations when ``trigger`` makes 'hit'
    true (and of none otherwise)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["carried"], ["carried_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, None),
        ],
    )
    constants = [
        numpy_helper.from_array(np.array(MANY_TRIPS, np.int64), "many"),
        numpy_helper.from_array(np.array(True), "keep"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
        numpy_helper.from_array(np.array(0, np.int64), "index0"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["x", "axis"], ["start"], keepdims=1),
        helper.make_node("Gather", ["x", "index0"], ["row0"], axis=0),
        helper.make_node("Gather", ["row0", "index0"], ["first"], axis=0),
        *trigger,
        helper.make_node("Cast", ["hit"], ["hit_count"], to=TensorProto.INT64),
        helper.make_node("Mul", ["hit_count", "many"], ["trips"]),
        helper.make_node("Loop", ["trips", "keep", "start"], ["y"], body=body),
    ]
    return _model(nodes, initializers + constants)


def stalls_always() -> bytes:
    """Runs for ever on any row (a Loop of MANY_TRIPS iterations, whatever the input)."""
    always = helper.make_tensor("always", TensorProto.BOOL, [], [True])
    return _looping([helper.make_node("Constant", [], ["hit"], value=always)], [])


def stalls_on_huge_values() -> bytes:
    """Runs for ever when the first value is above 10^30: only an extreme row finds it."""
    return _looping(
        [helper.make_node("Greater", ["first", "huge"], ["hit"])],
        [numpy_helper.from_array(np.array(1e30, np.float32), "huge")],
    )


def memory_per_row(values_per_row: int = 2_000_000) -> bytes:
    """Expands each of a row's 3 values to ``values_per_row`` floats before summing: about
    24 MB per row at the default, freed when the run ends."""
    constants = [
        numpy_helper.from_array(np.array([1, 1, values_per_row], np.int64), "wide"),
        numpy_helper.from_array(np.array([-1, 3, 1], np.int64), "as3"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "as2"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "as3"], ["x3"]),
        helper.make_node("Expand", ["x3", "wide"], ["big"]),
        helper.make_node("ReduceSum", ["big", "axes"], ["s"], keepdims=0),
        helper.make_node("Reshape", ["s", "as2"], ["y"]),
    ]
    return _model(nodes, constants)

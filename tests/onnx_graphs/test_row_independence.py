"""Which bounded graphs answer each row from that row alone (so requests may share a run):
every allowed operator has a rule or a reason it needs none; every operator's graph judged
row by row really is (each row answered alone as in the batch, and in any order); graphs
that mix rows (the batch's mean, a softmax over the batch, the first row, the number of
rows, one quantization scale for the batch) are judged to, and really do."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.onnx_graphs.classify import ALLOWED_OPS, ROWS_MIXED, classify
from app.onnx_graphs.row_independence import CHECKS, SIZE_OPS
from tests.onnx_graphs import ml_graphs, op_graphs
from tests.onnx_graphs.graph import FLOAT, INT64, Graph

ALLOWED = sorted((domain, op) for domain, ops in ALLOWED_OPS.items() for op in ops)
CASES = {**op_graphs.CASES, **ml_graphs.CASES}
ROWS = 6


def _ids(key: tuple[str, str]) -> str:
    return f"{key[0] or 'ai.onnx'}:{key[1]}"


def _answers(model: onnx.ModelProto, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's answer to ``rows`` in one batch, and to each row alone."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    together = session.run(["y"], {"x": rows})[0]
    alone = np.concatenate(
        [session.run(["y"], {"x": rows[i : i + 1]})[0] for i in range(len(rows))]
    )
    return together, alone


def _rows(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(ROWS, 4)).astype(np.float32)


def test_every_allowed_operator_has_a_rule_or_reads_sizes_only() -> None:
    assert sorted(set(CHECKS) | SIZE_OPS) == ALLOWED
    assert not set(CHECKS) & SIZE_OPS


@pytest.mark.parametrize("key", ALLOWED, ids=_ids)
def test_a_graph_judged_row_by_row_answers_each_row_as_alone(key: tuple[str, str]) -> None:
    model = CASES[key].build()
    judged = classify(model)
    assert judged.bounded, judged.reason
    if not judged.rows_independent:
        assert key in {("", "DynamicQuantizeLinear"), ("", "DequantizeLinear")} | {
            ("", "ConvInteger"),
            ("", "MatMulInteger"),
            ("", "Size"),
        }, judged.reason  # these graphs quantize dynamically or divide by the size
        return
    rows = _rows()
    together, alone = _answers(model, rows)
    assert np.allclose(together, alone, rtol=1e-5, atol=1e-5, equal_nan=True)
    order = np.random.default_rng(1).permutation(ROWS)
    shuffled, _ = _answers(model, rows[order])
    assert np.allclose(shuffled, together[order], rtol=1e-5, atol=1e-5, equal_nan=True)


def _batch_mean(g: Graph) -> tuple[str, int]:
    return g.op("Sub", "x", g.op("ReduceMean", "x", g.ints(0), keepdims=1)), 4


def _every_axis(g: Graph) -> tuple[str, int]:
    return g.op("Sub", "x", g.op("ReduceMax", "x", keepdims=1)), 4


def _softmax_over_the_batch(g: Graph) -> tuple[str, int]:
    return g.op("Softmax", "x", axis=0), 4


def _gathered_row(g: Graph) -> tuple[str, int]:
    return g.op("Add", "x", g.op("Gather", "x", g.ints(0), axis=0)), 4


def _over_the_row_count(g: Graph) -> tuple[str, int]:
    return g.op("Div", "x", g.op("Cast", g.op("Size", "x"), to=FLOAT)), 4


def _row_count_as_a_value(g: Graph) -> tuple[str, int]:
    rows = g.op("Gather", g.op("Shape", "x"), g.ints(0), axis=0)
    return g.op("Mul", "x", g.op("Cast", rows, to=FLOAT)), 4


def _argmax_over_the_batch(g: Graph) -> tuple[str, int]:
    top = g.op("Cast", g.op("ArgMax", "x", axis=0, keepdims=1), to=FLOAT)
    return g.op("Add", "x", top), 4


def _normalised_over_the_batch(g: Graph) -> tuple[str, int]:
    images = g.reshape("x", -1, 4, 1, 1)
    return g.flat(g.op("MeanVarianceNormalization", images, axes=[0, 2, 3])), 4


def _dynamically_quantized(g: Graph) -> tuple[str, int]:
    quantized, scale, zero = g.outputs("DynamicQuantizeLinear", "x", outs=3)
    return g.op("DequantizeLinear", quantized, scale, zero), 4


MIXING = {
    "the batch's mean": (_batch_mean, "ReduceMean", "reduces over the batch axis"),
    "a reduction over every axis": (_every_axis, "ReduceMax", "every axis"),
    "a softmax over the batch": (_softmax_over_the_batch, "Softmax", "axis is the batch axis"),
    "the first row": (_gathered_row, "Gather", "axis is the batch axis"),
    "divided by the size": (_over_the_row_count, "Div", "the number of rows"),
    "times the row count": (_row_count_as_a_value, "Mul", "the number of rows"),
    "an argmax over the batch": (_argmax_over_the_batch, "ArgMax", "batch axis"),
    "default normalisation axes": (_normalised_over_the_batch, "MeanVariance", "batch axis"),
    "one quantization scale": (_dynamically_quantized, "DynamicQuantizeLinear", "whole batch"),
}


@pytest.mark.parametrize("name", sorted(MIXING))
def test_a_graph_that_mixes_rows_is_judged_to_and_does(name: str) -> None:
    body, node, words = MIXING[name]
    g = Graph()
    tensor, width = body(g)
    model = g.model(tensor, width)
    onnx.checker.check_model(model, full_check=True)
    judged = classify(model)
    assert judged.bounded and not judged.rows_independent, judged.reason
    assert ROWS_MIXED.split("(")[0] in judged.reason
    assert f"node {node}" in judged.reason and words in judged.reason, judged.reason
    together, alone = _answers(model, _rows(2) * 3)
    assert not np.allclose(together, alone, rtol=1e-5, atol=1e-5), "the case must really mix"


def test_an_embedding_lookup_and_torchs_flatten_are_row_by_row() -> None:
    g = Graph()
    index = g.op("Cast", g.op("Floor", g.op("Clip", "x", g.const(0.0), g.const(2.0))), to=INT64)
    looked_up = g.op("Gather", g.const(np.arange(6.0).reshape(3, 2)), index, axis=0)  # [b, 4, 2]
    model = g.model(g.reshape(looked_up, -1, 8), 8)
    judged = classify(model)
    assert judged.bounded and judged.rows_independent, judged.reason
    assert classify(CASES[("", "Shape")].build()).rows_independent  # Shape→Gather→Concat→Reshape


def test_a_weight_computed_over_the_batch_is_judged_to_mix() -> None:
    g = Graph()  # x @ (x summed over the batch): the batch as the right operand of MatMul
    weight = g.op("ReduceSum", g.reshape("x", -1, 4, 1), g.ints(0), keepdims=0)  # [4, 1]
    model = g.model(g.op("MatMul", "x", weight), 1)
    judged = classify(model)
    assert judged.bounded and not judged.rows_independent, judged.reason
    assert "ReduceSum" in judged.reason


def test_the_probe_keeps_requests_apart_when_a_row_alone_is_answered_otherwise() -> None:
    """The probe's run-time check behind the static proof: a graph whose rows, answered
    alone, differ from the batch's answer is never merged, whatever the rules said."""
    from app.registry.probe_child import _rows_answered_alone

    class Centring:
        def run(self, rows: np.ndarray) -> np.ndarray:
            return rows - rows.mean(axis=0)

    class Doubling:
        def run(self, rows: np.ndarray) -> np.ndarray:
            return rows * 2

    rows = _rows()
    assert not _rows_answered_alone(Centring(), rows, Centring().run(rows))  # type: ignore[arg-type]
    assert _rows_answered_alone(Doubling(), rows, rows * 2)  # type: ignore[arg-type]
    assert not _rows_answered_alone(Doubling(), rows, rows[:2] * 2)  # type: ignore[arg-type]

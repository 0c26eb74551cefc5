"""Weight-only 4-bit dense layers (``int4``) with onnxruntime's own quantizer
(``MatMulNBitsQuantizer``): each dense weight matrix becomes 4-bit values in blocks of
``block_size`` inputs that share an fp32 scale (and a 4-bit zero point unless
symmetric), run by onnxruntime's ``MatMulNBits`` kernel. Everything else in the graph
(convolutions, biases, the input standardisation) stays fp32.

``MatMulNBits`` takes only a MatMul by a constant 2-D weight. Exported networks hold
their dense layers as Gemm (``y = x W^T + b``), so each Gemm by a constant weight is first
rewritten as MatMul by ``W^T`` plus an Add of the bias (exact). A graph with no such layer
is refused, saying what it holds instead."""

from __future__ import annotations

import collections
import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.compression.base import Candidate, CompressionData, CompressionError, Compressor, register
from app.compression.methods.quantize import _quiet
from app.compression.steps import Int4
from app.evaluation.metrics import quality_score
from app.evaluation.names import HIGHER_IS_BETTER, default_metric
from app.evaluation.sessions import open_session
from app.training.onnx_io import compact_onnx

BLOCK_SIZES = (128, 64, 32, 16)
# MatMulNBits' accuracy_level: 4 quantizes activations to int8 per block at run time
# (onnxruntime's fastest CPU path: faster than fp32 at batch 1 on LeNet-300-100, measured),
# 0 multiplies dequantized weights by fp32 activations.
ACCURACY_LEVELS = {"int8": 4, "fp32": 0}
WEIGHT_OPERATORS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"})


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _constant_matrix(name: str, initializers: dict[str, TensorProto]) -> np.ndarray | None:
    tensor = initializers.get(name)
    if tensor is None or tensor.data_type != TensorProto.FLOAT or len(tensor.dims) != 2:
        return None
    return numpy_helper.to_array(tensor)


def gemm_as_matmul(model: onnx.ModelProto) -> tuple[int, list[str]]:
    """Rewrite in place every Gemm by a constant fp32 2-D weight (not transposing its input)
    as MatMul by the weight as [inputs, units] (``alpha`` folded in) plus an Add of
    ``beta`` x bias. Returns how many were rewritten and why the others were not."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    rewritten, kept = 0, []
    for node in graph.node:
        if node.op_type != "Gemm":
            nodes.append(node)
            continue
        options = _attributes(node)
        weight = _constant_matrix(node.input[1], initializers)
        if weight is None or options.get("transA", 0):
            kept.append(
                "a Gemm whose weight is not a constant fp32 matrix"
                if weight is None
                else "a Gemm that transposes its input"
            )
            nodes.append(node)
            continue
        matrix = (weight.T if options.get("transB", 0) else weight) * options.get("alpha", 1.0)
        name = f"{node.input[1]}.kn{rewritten}"
        graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(matrix, dtype=np.float32), name)
        )
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = node.output[0] if bias is None else f"{node.output[0]}.mm"
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product]))
        if bias is not None:
            beta = float(options.get("beta", 1.0))
            if beta != 1.0:
                if bias not in initializers:
                    raise CompressionError("int4: a Gemm scales a computed bias (beta != 1)")
                scaled = numpy_helper.to_array(initializers[bias]) * beta
                bias = f"{bias}.b{rewritten}"
                graph.initializer.append(numpy_helper.from_array(scaled.astype(np.float32), bias))
            nodes.append(helper.make_node("Add", [product, bias], [node.output[0]]))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return rewritten, kept


def dense_layers(model: onnx.ModelProto) -> int:
    """MatMul nodes by a constant fp32 2-D weight: what MatMulNBits takes."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    return sum(
        1
        for node in model.graph.node
        if node.op_type == "MatMul" and _constant_matrix(node.input[1], initializers) is not None
    )


def refusal(model: onnx.ModelProto, kept: list[str]) -> str:
    """Why a graph has nothing for int4, naming what it holds instead."""
    counts = collections.Counter(
        node.op_type for node in model.graph.node if node.op_type in WEIGHT_OPERATORS
    )
    held = ", ".join(f"{count} {op}" for op, count in sorted(counts.items())) or "no weight layer"
    reasons = f" ({'; '.join(sorted(set(kept)))})" if kept else ""
    return (
        "int4: the graph has no dense layer that 4-bit weights can take: onnxruntime's "
        "MatMulNBits runs only a MatMul (or a Gemm rewritten as one) by a constant fp32 "
        f"2-D weight, and this graph holds {held}{reasons}"
    )


def _nbits_quantizer() -> Any:
    """onnxruntime's MatMulNBitsQuantizer class. Its module calls ``logging.basicConfig``
    at INFO when first imported; the root logger is put back as it was."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
    return MatMulNBitsQuantizer


def quantized(
    model: onnx.ModelProto, block_size: int, symmetric: bool, compute: str
) -> onnx.ModelProto:
    """A 4-bit copy of ``model`` (its MatMuls by constant weights as MatMulNBits)."""
    MatMulNBitsQuantizer = _nbits_quantizer()  # noqa: N806 (a class)
    with _quiet():
        quantizer = MatMulNBitsQuantizer(
            copy.deepcopy(model),
            bits=4,
            block_size=block_size,
            is_symmetric=symmetric,
            accuracy_level=ACCURACY_LEVELS[compute],
        )
        quantizer.process()
    result: onnx.ModelProto = quantizer.model.model
    compact_onnx(result)
    return result


def _score(onnx_bytes: bytes, candidate: Candidate, data: CompressionData) -> float:
    session = open_session(onnx_bytes, data.threads)
    output = session.run([candidate.output_name], {candidate.input_name: data.x_val})[0]
    return quality_score(default_metric(data.task), data.task, np.asarray(output), data.y_val)


@register("int4")
class Int4Quantizer(Compressor):
    """Dense layers' weights in 4 bits (MatMulNBits), with the block size given, or the
    one giving the smallest file whose validation score stays within the job's budget of
    the parent's."""

    step: Int4

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        model = onnx.load_model_from_string(candidate.onnx)
        rewritten, kept = gemm_as_matmul(model)
        layers = dense_layers(model)
        if not layers:
            raise CompressionError(refusal(model, kept))
        metric = default_metric(data.task)
        parent_score = _score(candidate.onnx, candidate, data)
        sizes = (self.step.block_size,) if self.step.block_size else BLOCK_SIZES
        tried: list[tuple[int, bytes, float]] = []
        for block_size in sizes:
            check()
            result = quantized(
                model, block_size, self.step.symmetric, self.step.compute
            ).SerializeToString()
            tried.append((block_size, result, _score(result, candidate, data)))
        block_size, onnx_bytes, _ = self._choose(tried, parent_score, metric, data)
        converted = sum(
            1
            for node in onnx.load_model_from_string(onnx_bytes).graph.node
            if node.op_type == "MatMulNBits"
        )
        if not converted:
            raise CompressionError(refusal(model, kept))
        others = collections.Counter(
            node.op_type for node in model.graph.node if node.op_type in WEIGHT_OPERATORS
        )
        others["MatMul"] -= converted
        return candidate.graph_only(
            onnx_bytes,
            {
                "weights": f"int4 in blocks of {block_size}"
                + (", symmetric" if self.step.symmetric else " with a zero point per block"),
                "bits": 4,
                "block_size": block_size,
                "symmetric": self.step.symmetric,
                "compute": self.step.compute,
                "int4_layers": converted,
                "gemm_rewritten_as_matmul": rewritten,
                "fp32_weight_layers": {op: n for op, n in sorted(others.items()) if n > 0},
                "tried": {
                    str(size): {"validation": round(value, 6), "bytes": len(result)}
                    for size, result, value in tried
                },
                "parent_validation": round(parent_score, 6),
            },
        )

    @staticmethod
    def _choose(
        tried: list[tuple[int, bytes, float]],
        parent_score: float,
        metric: str,
        data: CompressionData,
    ) -> tuple[int, bytes, float]:
        """The smallest file (a larger block is not always smaller: each layer's inputs
        are padded to whole blocks) whose validation score is within the job's budget of
        the parent's, else the best-scoring one."""
        if len(tried) == 1:
            return tried[0]
        higher = HIGHER_IS_BETTER[metric]

        def drop(score: float) -> float:
            return parent_score - score if higher else score / max(parent_score, 1e-12) - 1

        within = [item for item in tried if drop(item[2]) <= data.max_accuracy_drop + 1e-12]
        if within:
            return min(within, key=lambda item: len(item[1]))
        return max(tried, key=lambda item: item[2] if higher else -item[2])

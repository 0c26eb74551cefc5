"""Graph rewrites with onnxruntime's quantization tools (dynamic and static int8) and our own
fp16 weight storage. They need only the ONNX graph, so uploaded models qualify."""

from __future__ import annotations

import contextlib
import logging
import platform
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.compression.base import Candidate, CompressionData, CompressionError, Compressor, register
from app.compression.steps import FP16, QuantizeDynamic, QuantizeStatic, ReduceRange
from app.training.export import compact_onnx

CALIBRATION_BATCH = 64
FP16_MAX = 65504.0
MIN_FP16_ELEMENTS = 16  # tiny tensors (scales, shapes) stay fp32
FLOAT_OPERATORS = frozenset({"Add", "Sub", "Mul", "Div", "Softmax"})  # static int8 skips them


@cache
def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI dot-product instructions (other CPUs: True, since the
    u8 x s8 saturation problem that reduce_range works around is x86-specific)."""
    if platform.machine().lower() not in {"x86_64", "amd64", "i386", "i686"}:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def reduce_range_for(setting: ReduceRange) -> bool:
    """7-bit weights where the CPU lacks VNNI (auto), or as the user says."""
    return setting == "on" or (setting == "auto" and not cpu_has_vnni())


@contextlib.contextmanager
def _files(candidate: Candidate) -> Iterator[tuple[Path, Path]]:
    """The candidate as a prepared model file (shape inference, onnxruntime's recommended
    pre-processing) and a path for the quantized result."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        source, prepared = Path(folder) / "source.onnx", Path(folder) / "prepared.onnx"
        source.write_bytes(candidate.onnx)
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantize the model as it is
            prepared = source
        yield prepared, Path(folder) / "quantized.onnx"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger; keep worker logs readable."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


def _quantized_bytes(path: Path) -> bytes:
    model = onnx.load(str(path))
    compact_onnx(model)
    return model.SerializeToString()


@register("quantize_dynamic")
class DynamicQuantizer(Compressor):
    """int8 weights; activations are quantized per batch at run time (no calibration)."""

    step: QuantizeDynamic

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        reduce_range = reduce_range_for(self.step.reduce_range)
        with _files(candidate) as (prepared, output), _quiet():
            quantize_dynamic(
                str(prepared),
                str(output),
                weight_type=QuantType.QInt8,
                per_channel=self.step.per_channel,
                reduce_range=reduce_range,
            )
            onnx_bytes = _quantized_bytes(output)
        return candidate.graph_only(
            onnx_bytes,
            {"weights": "int8", "activations": "int8 at run time", "reduce_range": reduce_range},
        )


def _calibration(input_name: str, rows: np.ndarray) -> Any:
    """A reader that feeds training rows to onnxruntime's calibrator in batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Rows(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [
                    {input_name: rows[start : start + CALIBRATION_BATCH]}
                    for start in range(0, len(rows), CALIBRATION_BATCH)
                ]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    return Rows()


def calibration_rows(data: CompressionData, count: int) -> np.ndarray:
    """``count`` training rows (at most all of them), drawn with the job's seed."""
    rng = np.random.default_rng(data.seed)
    count = min(count, len(data.x_train))
    rows = data.x_train[np.sort(rng.choice(len(data.x_train), count, replace=False))]
    return np.ascontiguousarray(rows)


def static_int8(
    candidate: Candidate,
    rows: np.ndarray,
    *,
    per_channel: bool,
    reduce_range: bool,
    calibrate_method: str = "minmax",
    ranges: dict[str, tuple[float, float]] | None = None,
) -> bytes:
    """The candidate's graph as int8 QDQ: weights int8 (per output channel, or per tensor),
    activations uint8 with ranges calibrated on ``rows`` (``ranges``: tensor name ->
    (low, high) given instead of calibrated), which onnxruntime fuses into int8 kernels."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calibrate_method]
    overrides = {
        name: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
        for name, (low, high) in (ranges or {}).items()
    }
    reader = _calibration(candidate.input_name, rows)
    with _files(candidate) as (prepared, output), _quiet():
        # Element-wise arithmetic stays fp32: it holds no weights, and the input
        # standardisation (Sub, Mul) spans a range so wide before its Clip that one
        # int8 grid for it took LeNet-300-100 on MNIST from 93% to 38% accuracy.
        operators = {node.op_type for node in onnx.load(str(prepared)).graph.node}
        quantize_static(
            str(prepared),
            str(output),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            calibrate_method=method,
            op_types_to_quantize=sorted(operators - FLOAT_OPERATORS),
            # An int32 bias brings a scale and a zero point per unit: three
            # times the fp32 bias bytes, for the same speed (measured).
            extra_options={"QuantizeBias": False, "TensorQuantOverrides": overrides},
        )
        return _quantized_bytes(output)


@register("quantize_static")
class StaticQuantizer(Compressor):
    """int8 weights (per channel) and activations with ranges calibrated on training rows,
    as QuantizeLinear/DequantizeLinear pairs (QDQ) that onnxruntime fuses into int8 kernels."""

    step: QuantizeStatic

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        rows = calibration_rows(data, self.step.calibration_rows)
        reduce_range = reduce_range_for(self.step.reduce_range)
        onnx_bytes = static_int8(
            candidate,
            rows,
            per_channel=self.step.per_channel,
            reduce_range=reduce_range,
            calibrate_method=self.step.calibrate_method,
        )
        return candidate.graph_only(
            onnx_bytes,
            {
                "weights": "int8" + (" per channel" if self.step.per_channel else ""),
                "activations": "uint8, calibrated",
                "calibration_rows": len(rows),
                "calibrate_method": self.step.calibrate_method,
                "reduce_range": reduce_range,
            },
        )


@register("fp16")
class HalfPrecision(Compressor):
    """Stores every float weight tensor in half precision behind a Cast to float, so the
    file holds half the bytes and every operator still computes in fp32 (onnxruntime's
    CPU kernels are fp32; the Cast is folded once when the model loads)."""

    step: FP16

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        model = onnx.load_model_from_string(candidate.onnx)
        graph = model.graph
        casts, kept, converted = [], [], 0
        for tensor in graph.initializer:
            if tensor.data_type != TensorProto.FLOAT or _elements(tensor) < MIN_FP16_ELEMENTS:
                kept.append(tensor)
                continue
            values = numpy_helper.to_array(tensor)
            if np.abs(values).max(initial=0.0) > FP16_MAX:
                raise CompressionError(
                    f"fp16: weight {tensor.name!r} holds values beyond "
                    f"the half-precision range (±{FP16_MAX:g})"
                )
            half = numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}.fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT))
            converted += 1
        if not converted:
            raise CompressionError("fp16: the model has no float weights to convert")
        del graph.initializer[:]
        graph.initializer.extend(kept)
        nodes = [*casts, *graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
        return candidate.graph_only(
            model.SerializeToString(),
            {
                "weights": "fp16",
                "converted_tensors": converted,
                "note": "compute stays fp32 on CPU: the file halves, latency does not",
            },
        )


def _elements(tensor: Any) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1

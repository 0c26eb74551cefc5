"""Quantization-aware training (``qat``): a copy of the network is fine-tuned as the int8
graph will compute it, then served as that graph.

While training, every Linear and Conv2d weight passes through a symmetric int8 fake
quantizer per output channel (the grid onnxruntime's per-channel int8 uses: max |w| / 127,
or / 64 with 7-bit ``reduce_range``), the body's input through the uint8 grid its
calibrated range gives, and every ReLU becomes PACT: ``clip(x, 0, alpha)`` on a uint8 grid
over [0, alpha], with ``alpha`` learnt (its gradient is 1 where x >= alpha, rounding passes
gradients straight through; a small L2 pull keeps it from growing for nothing). The best
validation epoch is kept (the test split is never seen).

The served file is the fine-tuned float network with its ReLUs as those Clips, quantized
statically in QDQ format per channel by onnxruntime: the weights are already on the int8
grid (re-quantizing them is exact), the clipped activations get exactly [0, alpha] as
their range instead of a calibrated one, and the body's input the range it was trained
with. onnxruntime folds each Clip into the int8 kernel before it (its output range is the
clip), so the graph runs as integer kernels, as ``quantize_static``'s does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize

from app.compression.base import Candidate, CompressionData, CompressionError, Compressor, register
from app.compression.methods.quantize import calibration_rows, reduce_range_for, static_int8
from app.compression.steps import QuantizationAware
from app.training.export import fold_batch_norm
from app.training.models import Network
from app.training.train import TrainConfig, train

INT8_LEVELS = 127  # symmetric int8 weights: -127..127
REDUCED_INT8_LEVELS = 64  # onnxruntime's 7-bit weights (reduce_range): -64..64
UINT8_STEPS = 255  # uint8 activations: 256 values, 255 steps
ALPHA_DECAY = 1e-3  # L2 pull on each clip's learnt factor (PACT's alpha regulariser)


class FakeQuantWeight(nn.Module):
    """A parametrization: the weight rounded to the symmetric int8 grid of its output
    channel (scale max |w| / levels), gradients passing straight through the rounding."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (weight.dim() - 1)
        largest = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1)
        scale = (largest.clamp_min(1e-12) / self.levels).reshape(shape)
        grid = torch.clamp(torch.round(weight / scale), -self.levels, self.levels) * scale
        return weight + (grid - weight).detach()


def _uint8_grid(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``values`` rounded to the uint8 grid over [low, high] (0 included, as onnxruntime's
    asymmetric activation ranges are), gradients straight through."""
    low, high = min(low, 0.0), max(high, 0.0)
    step = max(high - low, 1e-12) / UINT8_STEPS
    zero = round(-low / step)
    grid = (torch.clamp(torch.round(values / step) + zero, 0, UINT8_STEPS) - zero) * step
    return values + (grid - values).detach()


class InputGrid(nn.Module):
    """The body's input on the uint8 grid of its calibrated range (while training)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.simulate = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _uint8_grid(x, self.low, self.high) if self.simulate else x


class PACT(nn.Module):
    """ReLU with a learnt upper clip: ``clip(x, 0, alpha)``, alpha = start x factor (the
    factor is what trains, so its steps are relative to the activation's scale), on the
    uint8 grid over [0, alpha] while simulating; exported as a plain Clip."""

    start: torch.Tensor

    def __init__(self, start: float) -> None:
        super().__init__()
        self.register_buffer("start", torch.tensor(max(start, 1e-6), dtype=torch.float32))
        self.factor = nn.Parameter(torch.ones((), dtype=torch.float32))
        self.factor.register_hook(lambda grad: grad + ALPHA_DECAY * self.factor.detach())
        self.simulate = True
        self.exported_alpha = 0.0

    def freeze(self) -> None:
        """Stop simulating: from now on a plain Clip at the learnt alpha (a constant)."""
        self.simulate, self.exported_alpha = False, self.alpha

    @property
    def alpha(self) -> float:
        return float((self.start * self.factor).detach().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.simulate:
            return torch.clamp(x, 0.0, self.exported_alpha)
        alpha = (self.start * self.factor).clamp_min(1e-6)
        clipped = torch.minimum(torch.relu(x), alpha)  # d/d alpha: 1 where x >= alpha
        step = alpha.detach() / UINT8_STEPS
        return clipped + (torch.round(clipped / step) * step - clipped).detach()


def _body_inputs(network: Network, rows: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What the body receives for ``rows``, and what each of its ReLUs gives."""
    seen: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        for module in network.body
        if isinstance(module, nn.ReLU)
    ]
    entry: list[torch.Tensor] = []
    hooks.append(
        network.body.register_forward_pre_hook(lambda _m, args: entry.append(args[0].detach()))
    )
    try:
        network.eval()
        with torch.no_grad():
            network(torch.from_numpy(rows))
    finally:
        for hook in hooks:
            hook.remove()
    return entry[0], seen


def _copy(network: Network) -> Network:
    clone = Network(network.config, network.classification)
    clone.load_state_dict(network.state_dict())
    return fold_batch_norm(clone.eval())  # the exported graph folds them: train what serves


def _clip_ranges(onnx_bytes: bytes, alphas: list[float]) -> dict[str, tuple[float, float]]:
    """The output tensors of the exported PACT Clips (min 0, max the next of ``alphas``,
    in graph order), each with its [0, alpha] range."""
    model = onnx.load_model_from_string(onnx_bytes)
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    ranges: dict[str, tuple[float, float]] = {}
    waiting = iter(alphas)
    alpha = next(waiting, None)
    for node in model.graph.node:
        bounds = [constants.get(name) for name in node.input[1:3]]
        if alpha is None or node.op_type != "Clip" or len(bounds) != 2:
            continue
        if any(value is None or value.size != 1 for value in bounds):
            continue
        low, high = (float(np.asarray(value).reshape(())) for value in bounds)
        if low == 0.0 and np.float32(high) == np.float32(alpha):
            ranges[node.output[0]] = (0.0, high)
            alpha = next(waiting, None)
    if len(ranges) != len(alphas):
        raise CompressionError(
            f"qat: only {len(ranges)} of the network's {len(alphas)} clipped activations "
            "were found in its exported graph; cannot give them their learnt ranges"
        )
    return ranges


@register("qat")
class QuantizationAwareTrainer(Compressor):
    """Fine-tunes a copy of the network with fake-quantized int8 weights, a quantized
    input and learnt activation clips (PACT), and serves it as an int8 QDQ graph."""

    needs_network = True
    step: QuantizationAware

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        network = _copy(self.network_of(candidate))
        layers = [m for m in network.body if isinstance(m, nn.Linear | nn.Conv2d)]
        if not layers:
            raise CompressionError("qat: the network has no weight layers to quantize")
        train_data = data.train_data(candidate.columns)
        rows = calibration_rows(data, self.step.calibration_rows)
        picked = rows if candidate.columns is None else rows[:, candidate.columns]
        entry, activations = _body_inputs(network, np.ascontiguousarray(picked))
        reduce_range = reduce_range_for(self.step.reduce_range)
        levels = REDUCED_INT8_LEVELS if reduce_range else INT8_LEVELS
        clips = self._simulate(network, entry, activations, levels)
        check()
        # The input standardisation stays: the body's input grid was measured through it.
        config = TrainConfig(
            epochs=self.step.fine_tune_epochs,
            learning_rate=self.step.learning_rate,
            seed=data.seed,
            keep_input_scaling=True,
        )
        train(network, train_data, config)
        check()
        for module in network.modules():
            if isinstance(module, PACT):
                module.freeze()
            elif isinstance(module, InputGrid):
                module.simulate = False
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        alphas = [clip.alpha for clip in clips]
        exported = candidate.derived(network, columns=candidate.columns, report={})
        ranges = _clip_ranges(exported.onnx, alphas)
        onnx_bytes = static_int8(
            exported, rows, per_channel=True, reduce_range=reduce_range, ranges=ranges
        )
        return candidate.graph_only(
            onnx_bytes,
            self._report(clips, activations, rows, reduce_range),
        )

    @staticmethod
    def _simulate(
        network: Network, entry: torch.Tensor, activations: list[torch.Tensor], levels: int
    ) -> list[PACT]:
        """Put the fake quantizers in: weights, the body's input, PACT for every ReLU
        (starting at the largest value it gave on the calibration rows, as a post-training
        min-max calibration would)."""
        for module in network.body:
            if isinstance(module, nn.Linear | nn.Conv2d):
                parametrize.register_parametrization(module, "weight", FakeQuantWeight(levels))
        starts = iter(float(values.max()) for values in activations)
        clips: list[PACT] = []
        body: list[nn.Module] = [InputGrid(float(entry.min()), float(entry.max()))]
        for module in network.body:
            if isinstance(module, nn.ReLU):
                clips.append(PACT(next(starts)))
                module = clips[-1]
            body.append(module)
        network.body = nn.Sequential(*body)
        return clips

    def _report(
        self,
        clips: list[PACT],
        activations: list[torch.Tensor],
        rows: np.ndarray,
        reduce_range: bool,
    ) -> dict[str, Any]:
        return {
            "weights": "int8 per channel, trained on the grid",
            "activations": "uint8; ReLUs clipped at learnt alphas (PACT)"
            if clips
            else "uint8, calibrated (no ReLU to clip)",
            "bits": 8,
            "alphas": [round(clip.alpha, 6) for clip in clips],
            "calibrated_max": [round(float(values.max()), 6) for values in activations],
            "fine_tune_epochs": self.step.fine_tune_epochs,
            "calibration_rows": len(rows),
            "reduce_range": reduce_range,
        }

"""Networks built from a configuration, with input (and target) scaling inside the graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from app.contracts.networks import CNNConfig, MLPConfig, NetworkConfig
from app.training.table_front import FeatureFront

INPUT_CLIP = 10.0  # standardised inputs are clipped to this many standard deviations
NORMAL_IQR = 1.349  # a normal distribution's interquartile range in standard deviations

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,  # uploaded networks only; searches do not choose it
}


class Network(nn.Module):
    """An MLP whose raw output is logits (classification) or a standardised value
    (regression). ``predict`` gives probabilities or values in the target's own units; the
    standardisation statistics are buffers, so they travel in the state dict and the ONNX."""

    input_mean: torch.Tensor
    input_scale: torch.Tensor
    target_mean: torch.Tensor
    target_scale: torch.Tensor

    def __init__(
        self, config: NetworkConfig, classification: bool, seed: int | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.classification = classification
        with torch.random.fork_rng():  # seeded weights without touching the global RNG
            if seed is not None:
                torch.manual_seed(seed)
            self.body = self._mlp(config) if isinstance(config, MLPConfig) else self._cnn(config)
            front = config.front if isinstance(config, MLPConfig) else None
            self.front = FeatureFront(front, config.n_inputs) if front is not None else None
        self.register_buffer("input_mean", torch.zeros(config.n_inputs))
        self.register_buffer("input_scale", torch.ones(config.n_inputs))
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_scale", torch.ones(1))

    @staticmethod
    def _dense(width: int, hidden: tuple[int, ...], config: NetworkConfig) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for units in hidden:
            layers.append(nn.Linear(width, units))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = units
        layers.append(nn.Linear(width, config.n_outputs))
        return layers

    @classmethod
    def _mlp(cls, config: MLPConfig) -> nn.Sequential:
        return nn.Sequential(*cls._dense(config.body_inputs, config.hidden, config))

    @classmethod
    def _cnn(cls, config: CNNConfig) -> nn.Sequential:
        channels, height, width = config.input_shape
        layers: list[nn.Module] = [nn.Unflatten(1, config.input_shape)]
        for out_channels in config.channels:
            layers.append(
                nn.Conv2d(channels, out_channels, config.kernel, padding=config.kernel // 2)
            )
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(ACTIVATIONS[config.activation]())
            if config.pooling != "none" and min(height, width) >= 2:
                pool = nn.MaxPool2d(2) if config.pooling == "max" else nn.AvgPool2d(2)
                layers.append(pool)
                height, width = height // 2, width // 2
            channels = out_channels
        layers.append(nn.Flatten())
        return nn.Sequential(
            *layers, *cls._dense(channels * height * width, (config.head_width,), config)
        )

    def fit_scaling(
        self, features: np.ndarray, target: np.ndarray | None, *, inputs: bool = True
    ) -> None:
        """Set the input (and regression target) standardisation from training rows
        (kept as they are for a network whose scaling is part of its weights). Without
        ``inputs`` the input standardisation stays: a reused body keeps what it learnt on."""
        if self.config.fixed_scaling:
            return
        if inputs:
            centre, spread = _centre_and_spread(features, robust=self._robust)
            self.input_mean.copy_(torch.from_numpy(centre.astype(np.float32)))
            scale = np.where(spread > 1e-8, 1.0 / np.maximum(spread, 1e-8), 1.0)
            self.input_scale.copy_(torch.from_numpy(scale.astype(np.float32)))
            if self.front is not None:
                scaled = np.clip((features - centre) * scale, -INPUT_CLIP, INPUT_CLIP)
                self.front.fit_bins(scaled.astype(np.float32))
        if target is not None and not self.classification:
            self.target_mean.fill_(float(target.mean()))
            self.target_scale.fill_(float(target.std()) or 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Clipped standardisation: a value far outside what training saw (a pixel that was
        # almost always 0) cannot dominate an activation. int8 kernels need that too:
        # dynamic quantization takes one range for a whole batch.
        scaled = (x - self.input_mean) * self.input_scale
        if not self.config.fixed_scaling:
            scaled = torch.clamp(scaled, -INPUT_CLIP, INPUT_CLIP)
        if self.front is not None:
            scaled = self.front(scaled)
        out: torch.Tensor = self.body(scaled)
        return out

    @property
    def _robust(self) -> bool:
        return isinstance(self.config, MLPConfig) and self.config.scaling == "robust"

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (classification) or values in target units (regression)."""
        raw = self.forward(x)
        if self.classification:
            return torch.softmax(raw, dim=-1)
        return raw * self.target_scale + self.target_mean


def _centre_and_spread(features: np.ndarray, *, robust: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: mean and standard deviation, or median and interquartile range in
    standard-deviation units (where that range is empty, as for a rare one-hot slot: the
    mean and standard deviation)."""
    mean, std = features.mean(axis=0), features.std(axis=0)
    if not robust:
        return mean, std
    low, median, high = np.quantile(features, [0.25, 0.5, 0.75], axis=0)
    spread = (high - low) / NORMAL_IQR
    usable = spread > 1e-8
    return np.where(usable, median, mean), np.where(usable, spread, std)


class Predictor(nn.Module):
    """The exported graph: ``Network.predict`` as ``forward``. With ``columns`` the graph
    takes every input column and gathers the ones the network reads (a Gather node), so a
    network trained on selected features keeps the full input signature."""

    columns: torch.Tensor

    def __init__(self, network: Network, columns: np.ndarray | None = None) -> None:
        super().__init__()
        self.network = network
        self.selects = columns is not None
        self.register_buffer(
            "columns",
            torch.as_tensor(columns if columns is not None else np.zeros(0), dtype=torch.int64),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.selects:
            x = torch.index_select(x, 1, self.columns)
        return self.network.predict(x)


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters."""
    return sum(parameter.numel() for parameter in network.parameters())


def transfer_groups(
    network: Network, frozen_layers: int
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Parameter-name prefixes for transfer: (frozen: the first ``frozen_layers`` weight
    layers with the norms and activations after them; slow: the rest of the reused body;
    head: the new output layer)."""
    weighted = [
        index
        for index, layer in enumerate(network.body)
        if isinstance(layer, nn.Linear | nn.Conv2d)
    ]
    head = weighted[-1]
    cut = weighted[frozen_layers] if frozen_layers < len(weighted) - 1 else head
    front = ("front.",) if network.front is not None else ()
    frozen = tuple(f"body.{index}." for index in range(cut))
    slow = tuple(f"body.{index}." for index in range(cut, head))
    # The feature embeddings are the body's first part: frozen with its first layer.
    return (
        (*front, *frozen) if frozen_layers else frozen,
        slow if frozen_layers else (*front, *slow),
        (f"body.{head}.",),
    )

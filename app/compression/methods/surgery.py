"""Structured surgery on a ``Network``: keep some units of every hidden layer (and conv
channels) and build a physically smaller network with the kept weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from app.contracts.networks import CNNConfig, MLPConfig
from app.core.errors import BrokenInvariant
from app.training.models import Network

PRUNABLE = (nn.Linear, nn.Conv2d)


def weighted_layers(network: Network) -> list[tuple[int, nn.Linear | nn.Conv2d]]:
    """(position in ``network.body``, layer) of every Linear and Conv2d, in order."""
    return [
        (index, layer) for index, layer in enumerate(network.body) if isinstance(layer, PRUNABLE)
    ]


def norm_importance(layer: nn.Linear | nn.Conv2d, order: int) -> torch.Tensor:
    """Per output unit: the L1 or L2 norm of its incoming weights."""
    weights = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    return weights.abs().sum(dim=1) if order == 1 else weights.pow(2).sum(dim=1).sqrt()


def taylor_importance(
    network: Network, x: torch.Tensor, y: torch.Tensor, batches: int = 8, batch_size: int = 128
) -> list[torch.Tensor]:
    """Per output unit of every weighted layer: sum of |weight x gradient| of the training
    loss over a few batches (first-order Taylor estimate of the loss change on removal)."""
    layers = [layer for _, layer in weighted_layers(network)]
    scores = [torch.zeros(layer.weight.shape[0]) for layer in layers]
    loss_fn: nn.Module = nn.CrossEntropyLoss() if network.classification else nn.MSELoss()
    network.eval()
    for start in range(0, min(len(x), batches * batch_size), batch_size):
        network.zero_grad(set_to_none=True)
        output = network(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_fn(output, target).backward()
        for score, layer in zip(scores, layers, strict=True):
            if layer.weight.grad is None:
                raise BrokenInvariant("layer.weight.grad is None")
            contribution = (layer.weight.detach() * layer.weight.grad).abs()
            score += contribution.reshape(contribution.shape[0], -1).sum(dim=1)
    network.zero_grad(set_to_none=True)
    return scores


def top_units(importance: torch.Tensor, ratio: float) -> np.ndarray:
    """Sorted indices of the units kept when ``ratio`` of them are removed (at least one)."""
    count = max(1, round(len(importance) * (1 - ratio)))
    return np.sort(torch.argsort(importance, descending=True)[:count].numpy())


def _smaller_config(network: Network, kept: list[np.ndarray]) -> MLPConfig | CNNConfig:
    widths = tuple(len(units) for units in kept)
    if isinstance(network.config, MLPConfig):
        return dataclasses.replace(network.config, hidden=widths)
    return dataclasses.replace(network.config, channels=widths[:-1], head_width=widths[-1])


def _copy_layer(
    target: nn.Module, source: nn.Module, rows: np.ndarray | None, columns: np.ndarray | None
) -> None:
    """Copy ``source``'s parameters and buffers into ``target``, keeping ``rows`` of the
    output dimension and ``columns`` of the input dimension."""
    for name, value in [
        *source.named_parameters(recurse=False),
        *source.named_buffers(recurse=False),
    ]:
        tensor = value.detach()
        if tensor.dim() == 0:
            getattr(target, name).copy_(tensor)
            continue
        if rows is not None:
            tensor = tensor[torch.from_numpy(rows)]
        if columns is not None and tensor.dim() >= 2:
            tensor = tensor[:, torch.from_numpy(columns)]
        getattr(target, name).data.copy_(tensor)


def shrink(network: Network, kept: list[np.ndarray]) -> Network:
    """A new network holding only ``kept[i]`` units of the i-th hidden weighted layer (the
    output layer keeps all). Batch norms follow their layer; the first dense layer after a
    conv stack keeps the flattened inputs of the kept channels."""
    smaller = Network(_smaller_config(network, kept), network.classification)
    layers = weighted_layers(network)
    inputs: np.ndarray | None = None  # kept inputs of the next weighted layer (None: all)
    rows: np.ndarray | None = None
    layer_number = 0
    for index, module in enumerate(network.body):
        target = smaller.body[index]
        if isinstance(module, PRUNABLE):
            rows = kept[layer_number] if layer_number < len(kept) else None
            if (
                isinstance(module, nn.Linear)
                and inputs is not None
                and module.in_features != _width_of(layers, layer_number - 1)
            ):
                inputs = _flattened(inputs, module.in_features, _width_of(layers, layer_number - 1))
            _copy_layer(target, module, rows, inputs)
            inputs = rows
            layer_number += 1
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            _copy_layer(target, module, rows, None)
    for name in ("input_mean", "input_scale", "target_mean", "target_scale"):
        getattr(smaller, name).copy_(getattr(network, name))
    if network.front is not None and smaller.front is not None:  # the embeddings stay whole
        smaller.front.load_state_dict(network.front.state_dict())
    smaller.eval()
    return smaller


def _width_of(layers: list[tuple[int, nn.Linear | nn.Conv2d]], number: int) -> int:
    return layers[number][1].weight.shape[0]


def _flattened(channels: np.ndarray, in_features: int, n_channels: int) -> np.ndarray:
    """Flattened feature indices (channel-major, as nn.Flatten orders them) of kept channels."""
    per_channel = in_features // n_channels
    return (channels[:, None] * per_channel + np.arange(per_channel)[None, :]).reshape(-1)

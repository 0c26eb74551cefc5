"""The training loop: minibatch SGD-family training with best-epoch restore."""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from app.training.models import Network


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network."""

    epochs: int
    learning_rate: float
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class TrainData:
    """Training and validation rows; targets are class indices or float values."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class TrainResult:
    """The best validation score seen, the epoch-by-epoch scores, and the time it took."""

    score: float
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def validation_score(network: Network, x: torch.Tensor, y: np.ndarray) -> float:
    """Accuracy for classification (higher is better), RMSE for regression (lower)."""
    network.eval()
    with torch.no_grad():
        output = network.predict(x).numpy()
    if network.classification:
        return float((output.argmax(axis=1) == y).mean())
    return float(np.sqrt(np.mean((output.reshape(-1) - y) ** 2)))


def train(network: Network, data: TrainData, config: TrainConfig,
          on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train in place and restore the weights of the best validation epoch.

    ``on_epoch(epoch, score)`` is called after every epoch; it may raise to stop training."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network.fit_scaling(data.x_train, data.y_train)
    x_train = torch.from_numpy(data.x_train)
    x_val = torch.from_numpy(data.x_val)
    if network.classification:
        y_train = torch.from_numpy(data.y_train.astype(np.int64))
        loss_fn: nn.Module = nn.CrossEntropyLoss()
    else:
        scaled = (data.y_train - float(network.target_mean)) / float(network.target_scale)
        y_train = torch.from_numpy(scaled.astype(np.float32)).reshape(-1, 1)
        loss_fn = nn.MSELoss()
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    higher_is_better = network.classification
    best_score = -math.inf if higher_is_better else math.inf
    best_state = copy.deepcopy(network.state_dict())
    history: list[float] = []
    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        score = validation_score(network, x_val, data.y_val)
        if not math.isfinite(score):
            raise FloatingPointError(f"validation score became {score} at epoch {epoch + 1}")
        history.append(score)
        if (score > best_score) if higher_is_better else (score < best_score):
            best_score = score
            best_state = copy.deepcopy(network.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, score)
    network.load_state_dict(best_state)
    network.eval()
    return TrainResult(score=best_score, history=history,
                       seconds=time.perf_counter() - started)


def save_weights(network: nn.Module) -> bytes:
    """The state dict as bytes (tensors only; loadable with ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


def load_weights(network: nn.Module, data: bytes) -> None:
    """Load weights saved by ``save_weights`` without unpickling arbitrary objects."""
    network.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))

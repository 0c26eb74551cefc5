"""The training loop: minibatch SGD-family training with best-epoch restore."""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from app.evaluation.metrics import quality_score
from app.evaluation.names import HIGHER_IS_BETTER, default_metric
from app.training.models import Network
from app.training.stopping import check_stop

if TYPE_CHECKING:
    from app.training.parallel import DataParallelGroup


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network. ``metric`` is the validation metric that picks the best
    epoch (and that trials report); ``patience`` stops after that many epochs without a
    better one (0: never)."""

    epochs: int
    learning_rate: float
    batch_size: int = 64
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    l1: float = 0.0
    optimizer: str = "adamw"  # sgd, adam or adamw
    lr_schedule: str = "none"  # none, cosine or step
    patience: int = 0
    metric: str | None = None  # default: accuracy (classification) or rmse (regression)
    seed: int = 0
    restore_best: bool = True  # False: keep the last epoch (a refit with a known count)
    # Transfer: parameter-name prefixes left as they are, trained at learning_rate *
    # slow_lr_factor (the reused body), and trained alone for head_warmup_epochs first.
    frozen: tuple[str, ...] = ()
    slow: tuple[str, ...] = ()
    slow_lr_factor: float = 1.0
    head: tuple[str, ...] = ()
    head_warmup_epochs: int = 0
    keep_input_scaling: bool = False  # transfer: the body keeps the inputs it learnt on
    device: str = "cpu"  # a torch device: cpu, cuda, cuda:1 (see app.training.device)


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
    best_epoch: int = 0  # 0-based epoch of the best validation score


def _task(network: Network) -> str:
    return "classification" if network.classification else "regression"


def validation_score(
    network: Network, x: torch.Tensor, y: np.ndarray, metric: str | None = None
) -> float:
    """A quality metric of the network on validation rows (default: accuracy, or RMSE)."""
    network.eval()
    with torch.no_grad():
        output = network.predict(x).cpu().numpy()
    task = _task(network)
    return quality_score(metric or default_metric(task), task, output, y)


def _groups(
    network: Network, config: TrainConfig, only: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Parameter groups: frozen prefixes left out (and marked so), slow ones at the slower
    rate; with ``only``, just the parameters under those prefixes."""
    normal: list[nn.Parameter] = []
    slow: list[nn.Parameter] = []
    for name, parameter in network.named_parameters():
        if config.frozen and name.startswith(config.frozen):
            parameter.requires_grad_(False)
            continue
        if only and not name.startswith(only):
            continue
        (slow if config.slow and name.startswith(config.slow) else normal).append(parameter)
    groups: list[dict[str, Any]] = [{"params": normal, "lr": config.learning_rate}]
    if slow:
        groups.append({"params": slow, "lr": config.learning_rate * config.slow_lr_factor})
    return groups


def _optimizer(
    network: Network, config: TrainConfig, only: tuple[str, ...] = ()
) -> torch.optim.Optimizer:
    parameters = _groups(network, config, only)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(
            parameters, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, config.epochs // 3), gamma=0.3
        )
    return None


def _l1_penalty(network: Network) -> torch.Tensor:
    return sum(
        (
            layer.weight.abs().sum()
            for layer in network.modules()
            if isinstance(layer, nn.Linear | nn.Conv2d)
        ),
        torch.zeros(()),
    )


def train(
    network: Network,
    data: TrainData,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    group: DataParallelGroup | None = None,
) -> TrainResult:
    """Train in place on ``config.device`` and restore the weights of the best validation
    epoch; the network is back on the CPU when this returns.

    ``on_epoch(epoch, score)`` is called after every epoch (on rank 0 of a ``group``); it
    may raise to stop training. With a data-parallel ``group`` each process computes its
    share of every batch (see ``app.training.parallel``)."""
    try:
        return _train(network, data, config, on_epoch, group)
    finally:
        network.to("cpu")
        network.eval()


def _train(
    network: Network,
    data: TrainData,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None,
    group: DataParallelGroup | None,
) -> TrainResult:
    started = time.perf_counter()
    device = torch.device(config.device)
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    torch.manual_seed(config.seed + rank)  # dropout masks differ between processes
    generator = torch.Generator().manual_seed(config.seed)  # one batch order for all
    network.fit_scaling(data.x_train, data.y_train, inputs=not config.keep_input_scaling)
    network.to(device)
    x_train = torch.from_numpy(data.x_train).to(device)
    x_val = torch.from_numpy(data.x_val).to(device)
    if network.classification:
        y_train = torch.from_numpy(data.y_train.astype(np.int64)).to(device)
        loss_fn: nn.Module = nn.CrossEntropyLoss(reduction="sum")
    else:
        scaled = (data.y_train - float(network.target_mean)) / float(network.target_scale)
        y_train = torch.from_numpy(scaled.astype(np.float32)).reshape(-1, 1).to(device)
        loss_fn = nn.MSELoss(reduction="sum")
    if config.head_warmup_epochs and config.head:  # identical on every rank: no group
        _warm_up_head(network, config, x_train, y_train, loss_fn, generator)
    model = group.wrap(network) if group is not None else network
    optimizer = _optimizer(network, config)
    schedule = _schedule(optimizer, config)
    metric = config.metric or default_metric(_task(network))
    higher_is_better = HIGHER_IS_BETTER[metric]
    best_score = -math.inf if higher_is_better else math.inf
    best_state = copy.deepcopy(network.state_dict())
    history: list[float] = []
    since_best, best_epoch = 0, 0
    smallest = 2 * world  # a shard of one row breaks batch norm and says little
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < smallest and len(order) >= smallest:
                continue
            check_stop()  # cancel and time limits act inside an epoch, not only after it
            optimizer.zero_grad(set_to_none=True)
            rows = group.shard(batch) if group is not None else batch
            # The mean over the whole batch, whichever process holds which of its rows.
            loss = loss_fn(model(x_train[rows]), y_train[rows]) * (world / len(batch))
            if config.l1 > 0:
                loss = loss + config.l1 * _l1_penalty(network)
            loss.backward()
            optimizer.step()
        if schedule is not None:
            schedule.step()
        score = validation_score(network, x_val, data.y_val, metric)
        if not math.isfinite(score):
            raise FloatingPointError(f"validation score became {score} at epoch {epoch + 1}")
        history.append(score)
        since_best += 1
        if (score > best_score) if higher_is_better else (score < best_score):
            best_score, best_epoch = score, epoch
            if config.restore_best:
                best_state = copy.deepcopy(network.state_dict())
            since_best = 0
        if _epoch_callback(on_epoch, epoch, score, group):
            break
        if config.patience and since_best >= config.patience:
            break
    if config.restore_best:
        network.load_state_dict(best_state)
    return TrainResult(
        score=best_score,
        history=history,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
    )


def _epoch_callback(
    on_epoch: Callable[[int, float], None] | None,
    epoch: int,
    score: float,
    group: DataParallelGroup | None,
) -> bool:
    """Run ``on_epoch`` (rank 0's) and tell the group whether it stopped training; True on
    a member told to stop. What ``on_epoch`` raised is raised again on rank 0."""
    if group is None:
        if on_epoch is not None:
            on_epoch(epoch, score)
        return False
    stopped: BaseException | None = None
    if group.rank == 0 and on_epoch is not None:
        try:
            on_epoch(epoch, score)
        except BaseException as error:  # raised again below, once the members know
            stopped = error
    stop = group.agree_to_stop(stopped is not None)
    if stopped is not None:
        raise stopped
    return stop


def _warm_up_head(
    network: Network,
    config: TrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    loss_fn: nn.Module,
    generator: torch.Generator,
) -> None:
    """A few epochs that train the new output layer alone, so that its first, random
    gradients do not wreck the reused body."""
    optimizer = _optimizer(network, config, only=config.head)
    network.train()
    for _ in range(config.head_warmup_epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2 and len(order) >= 2:
                continue
            check_stop()
            optimizer.zero_grad(set_to_none=True)
            (loss_fn(network(x_train[batch]), y_train[batch]) / len(batch)).backward()
            optimizer.step()


def save_weights(network: nn.Module) -> bytes:
    """The state dict as bytes (tensors only; loadable with ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


def load_weights(network: nn.Module, data: bytes, *, except_prefixes: tuple[str, ...] = ()) -> None:
    """Load weights saved by ``save_weights`` without unpickling arbitrary objects; those
    under ``except_prefixes`` (a new output layer) keep their fresh values."""
    state = torch.load(io.BytesIO(data), weights_only=True)
    if except_prefixes:
        fresh = network.state_dict()
        state = {
            name: fresh[name] if name.startswith(except_prefixes) else value
            for name, value in state.items()
        }
        state.update({n: v for n, v in fresh.items() if n.startswith(except_prefixes)})
    network.load_state_dict(state)

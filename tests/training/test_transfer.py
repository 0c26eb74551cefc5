"""Transfer inside the training loop: which parameters are frozen, slow or the new head;
the head learns alone during its warm-up; frozen layers never move; the reused weights
load under a fresh head."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from app.contracts.networks import MLPConfig
from app.training.models import Network, transfer_groups
from app.training.train import TrainConfig, TrainData, load_weights, save_weights, train


def layer(network: Network, index: int) -> nn.Linear:
    found = network.body[index]
    assert isinstance(found, nn.Linear)
    return found


def data(seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return TrainData(x[:150], y[:150], x[150:], y[150:])


def network(outputs: int = 2) -> Network:
    return Network(
        MLPConfig(n_inputs=6, n_outputs=outputs, hidden=(16, 8), batch_norm=True),
        classification=True,
        seed=0,
    )


def snapshot(model: Network) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def moved(before: dict[str, torch.Tensor], model: Network) -> set[str]:
    return {
        name
        for name, value in model.named_parameters()
        if not torch.equal(before[name], value.detach())
    }


def test_groups_split_body_and_head_at_weight_layers() -> None:
    frozen, slow, head = transfer_groups(network(), frozen_layers=1)
    # body: Linear, BatchNorm, ReLU | Linear, BatchNorm, ReLU | Linear (the head)
    assert frozen == ("body.0.", "body.1.", "body.2.")
    assert slow == ("body.3.", "body.4.", "body.5.") and head == ("body.6.",)
    everything, none, _ = transfer_groups(network(), frozen_layers=2)
    assert none == () and len(everything) == 6
    assert transfer_groups(network(), frozen_layers=0)[0] == ()


def test_frozen_layers_never_move_and_the_rest_learns() -> None:
    model = network()
    frozen, slow, head = transfer_groups(model, frozen_layers=1)
    before = snapshot(model)
    config = TrainConfig(
        epochs=3,
        learning_rate=1e-2,
        frozen=frozen,
        slow=slow,
        head=head,
        slow_lr_factor=0.1,
        restore_best=False,
    )
    train(model, data(), config)
    changed = moved(before, model)
    assert not any(name.startswith(frozen) for name in changed)
    assert any(name.startswith(slow) for name in changed)
    assert any(name.startswith(head) for name in changed)


def test_the_warm_up_trains_the_head_alone() -> None:
    model = network()
    _, slow, head = transfer_groups(model, frozen_layers=0)
    before = snapshot(model)
    train(
        model,
        data(),
        TrainConfig(epochs=0, learning_rate=1e-2, slow=slow, head=head, head_warmup_epochs=2),
    )
    assert moved(before, model) and all(name.startswith(head) for name in moved(before, model))


def test_reused_weights_load_under_a_fresh_head() -> None:
    source = network(outputs=3)
    train(
        source,
        dataclasses.replace(data(), y_train=data().y_train % 3),
        TrainConfig(epochs=2, learning_rate=1e-2),
    )
    target = Network(dataclasses.replace(source.config, n_outputs=2), classification=True, seed=1)
    fresh_head = layer(target, 6).weight.detach().clone()
    load_weights(target, save_weights(source), except_prefixes=("body.6.",))
    assert torch.equal(layer(target, 0).weight, layer(source, 0).weight)
    assert torch.equal(layer(target, 6).weight, fresh_head)

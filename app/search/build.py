"""Turning a trial's parameters into a network and its training configuration (worker
side: imports torch through ``app.training``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.contracts.encoding import TableEncoding
from app.contracts.networks import CNNConfig, MLPConfig, NetworkConfig
from app.core.errors import BrokenInvariant
from app.search.front import front_for
from app.training.train import TrainConfig


def _per_layer(params: dict[str, Any], name: str, count: int) -> tuple[int, ...]:
    if name in params:  # tied (grid search)
        return (int(params[name]),) * count
    return tuple(int(params[f"{name}_{layer}"]) for layer in range(count))


@dataclass(frozen=True)
class Candidate:
    """One point of the space, ready to build and train."""

    network: NetworkConfig
    training: TrainConfig


def candidate(
    params: dict[str, Any],
    *,
    n_inputs: int,
    n_outputs: int,
    input_shape: list[int] | None,
    seed: int,
    metric: str | None = None,
    architecture: NetworkConfig | None = None,
    encoding: TableEncoding | None = None,
) -> Candidate:
    """Build the network and training configurations a parameter dict describes (a
    table's ``encoding`` places the feature embeddings its parameters ask for)."""
    network: NetworkConfig
    if architecture is not None:  # init_from: its layers, with this dataset's outputs
        network = dataclasses.replace(architecture, n_outputs=n_outputs)
    elif "n_blocks" in params:
        if input_shape is None:
            raise BrokenInvariant("input_shape is None")
        if not (len(input_shape) == 3):
            raise BrokenInvariant("not (len(input_shape) == 3)")
        network = CNNConfig(
            input_shape=(input_shape[0], input_shape[1], input_shape[2]),
            n_outputs=n_outputs,
            channels=_per_layer(params, "channels", int(params["n_blocks"])),
            kernel=int(params["kernel"]),
            pooling=str(params["pooling"]),
            head_width=int(params["head_width"]),
            activation=str(params["activation"]),
            dropout=float(params["dropout"]),
            batch_norm=bool(params["batch_norm"]),
        )
    else:
        network = MLPConfig(
            n_inputs=n_inputs,
            n_outputs=n_outputs,
            hidden=_per_layer(params, "width", int(params["n_layers"])),
            activation=str(params["activation"]),
            dropout=float(params["dropout"]),
            batch_norm=bool(params["batch_norm"]),
            scaling="robust" if params.get("scaling") == "robust" else "standard",
            front=front_for(params, encoding),
        )
    training = TrainConfig(
        epochs=int(params["epochs"]),
        learning_rate=float(params["learning_rate"]),
        batch_size=int(params["batch_size"]),
        weight_decay=float(params["weight_decay"]),
        l1=float(params["l1"]),
        optimizer=str(params["optimizer"]),
        lr_schedule=str(params["lr_schedule"]),
        patience=int(params["patience"]),
        metric=metric,
        seed=seed,
    )
    return Candidate(network=network, training=training)

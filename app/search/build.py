"""Turning a trial's parameters into a network and its training configuration (worker
side: imports torch through ``app.training``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.contracts.encoding import TableEncoding
from app.contracts.networks import NetworkConfig
from app.core.errors import BrokenInvariant
from app.search.front import front_for
from app.training.families.networks import NetworkFamily, TrainingParams
from app.training.families.registry import NETWORK_FAMILIES, network_family
from app.training.network_fit import train_config
from app.training.train import TrainConfig

__all__ = ["Candidate", "candidate", "front_for"]


@dataclass(frozen=True)
class Candidate:
    """One point of the space, ready to build and train."""

    network: NetworkConfig
    training: TrainConfig


def network_of(params: Mapping[str, Any]) -> NetworkFamily[Any]:
    """The network family whose architecture a trial's parameters describe (the one whose
    dimensions they all name: a CNN's blocks, an MLP's layers)."""
    for name in NETWORK_FAMILIES:
        family = network_family(name)
        names = [n for n, d in family.params_model.dimensions().items() if not d.per_layer]
        if all(n in params for n in names):
            return family
    raise BrokenInvariant(f"no network family's parameters: {sorted(params)}")


def candidate(
    params: Mapping[str, Any],
    *,
    n_inputs: int,
    n_outputs: int,
    input_shape: list[int] | None,
    seed: int,
    metric: str | None = None,
    architecture: NetworkConfig | None = None,
    encoding: TableEncoding | None = None,
) -> Candidate:
    """Build the network and training configurations a trial's stored parameters describe,
    typed by the network's family (a table's ``encoding`` places the feature embeddings
    its parameters ask for)."""
    network: NetworkConfig
    if architecture is not None:  # init_from: its layers, with this dataset's outputs
        network = dataclasses.replace(architecture, n_outputs=n_outputs)
        training = TrainingParams.from_values(params)
    else:
        family = network_of(params)
        typed = family.params(params)
        network = family.network_config(
            typed,
            n_inputs=n_inputs,
            n_outputs=n_outputs,
            input_shape=tuple(input_shape) if input_shape is not None else None,
            front=front_for(dict(params), encoding),
        )
        training = typed.training
    return Candidate(network=network, training=train_config(training, seed=seed, metric=metric))

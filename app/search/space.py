"""The default search space: MLP architecture plus training parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from app.training.models import MLPConfig
from app.training.train import TrainConfig

MAX_HIDDEN_LAYERS = 3
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
BATCH_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class Candidate:
    """One point of the space, ready to build and train."""

    network: MLPConfig
    training: TrainConfig


def suggest(trial: optuna.Trial, *, max_epochs: int) -> dict[str, Any]:
    """Sample one configuration; returns the flat parameter dict stored on the trial."""
    n_layers = trial.suggest_int("n_layers", 1, MAX_HIDDEN_LAYERS)
    for layer in range(n_layers):
        trial.suggest_int(f"width_{layer}", 16, 256, log=True)
    trial.suggest_categorical("activation", list(ACTIVATIONS))
    trial.suggest_float("dropout", 0.0, 0.3)
    trial.suggest_float("learning_rate", 3e-4, 3e-2, log=True)
    trial.suggest_categorical("batch_size", list(BATCH_SIZES))
    trial.suggest_int("epochs", min(10, max_epochs), max_epochs)
    return dict(trial.params)


def candidate(params: dict[str, Any], *, n_inputs: int, n_outputs: int, seed: int) -> Candidate:
    """Build the network and training configurations a parameter dict describes."""
    hidden = tuple(int(params[f"width_{layer}"]) for layer in range(int(params["n_layers"])))
    return Candidate(
        network=MLPConfig(n_inputs=n_inputs, n_outputs=n_outputs, hidden=hidden,
                          activation=str(params["activation"]),
                          dropout=float(params["dropout"])),
        training=TrainConfig(epochs=int(params["epochs"]),
                             learning_rate=float(params["learning_rate"]),
                             batch_size=int(params["batch_size"]), seed=seed))

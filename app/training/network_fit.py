"""The network families' fit, export and description through the torch code (the paths
``app.training.families.networks`` names, loaded on first use): a network of the family's
architecture trained by ``app.training.train`` on the given rows. The search's network
trials train the same networks with more (pruning reports, folds, data parallelism,
``init_from``): ``app.search.fit``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from app.contracts.networks import NetworkConfig
from app.training.export import export_onnx
from app.training.families.networks import TrainingParams
from app.training.models import Network, count_parameters
from app.training.table_models import FitOptions, ModelDescription, TableData
from app.training.train import TrainConfig, TrainData, train


def train_config(training: TrainingParams, *, seed: int, metric: str | None = None) -> TrainConfig:
    """How a network trains, from its family's typed training parameters."""
    return TrainConfig(
        epochs=training.epochs,
        learning_rate=training.learning_rate,
        batch_size=training.batch_size,
        weight_decay=training.weight_decay,
        l1=training.l1,
        optimizer=training.optimizer,
        lr_schedule=training.lr_schedule,
        patience=training.patience,
        metric=metric,
        seed=seed,
    )


def fit_network(
    config: NetworkConfig, training: TrainingParams, data: TableData, options: FitOptions
) -> Network:
    """A network of ``config`` trained on ``data``'s rows (best epoch on its watched rows,
    or on the training rows when it has none)."""
    network = Network(config, classification=config.n_outputs > 1, seed=options.seed)
    watched_x = data.x_val if data.x_val is not None else data.x_train
    watched_y = data.y_val if data.y_val is not None else data.y_train
    options.check()
    train(
        network,
        TrainData(data.x_train, data.y_train, watched_x, watched_y),
        train_config(training, seed=options.seed),
        on_epoch=lambda epoch, score: options.check(),
    )
    return network


def network_graph(network: Network) -> onnx.ModelProto:
    """The network exported as the search exports it (``export_onnx``)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.onnx"
        export_onnx(network, path)
        return onnx.load(str(path))


def describe_network(family: str, network: Network) -> ModelDescription:
    return ModelDescription(
        family=family, model=network.config.kind, learnt=count_parameters(network)
    )

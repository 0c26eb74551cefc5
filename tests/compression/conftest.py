"""Small trained networks and their data splits, shared by the compression tests."""

from __future__ import annotations

import numpy as np
import pytest

from app.compression.base import Candidate, CompressionData
from app.contracts.networks import CNNConfig, MLPConfig, NetworkConfig
from app.training.models import Network
from app.training.train import TrainConfig, train


def blobs(
    task: str, n_rows: int = 360, n_features: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Separable clusters (classification) or a smooth function of the columns (regression);
    the last two columns are constant, so a variance threshold has something to drop."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    x[:, -2:] = 1.5
    if task == "classification":
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8).astype(np.int64)
        x[:, :3] += y[:, None].astype(np.float32)
        return x, y
    return x, (2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] ** 2).astype(np.float32)


def data_for(x: np.ndarray, y: np.ndarray, task: str) -> CompressionData:
    cut1, cut2 = int(len(x) * 0.6), int(len(x) * 0.8)
    return CompressionData(
        task=task,
        x_train=x[:cut1],
        y_train=y[:cut1],
        x_val=x[cut1:cut2],
        y_val=y[cut1:cut2],
        x_test=x[cut2:],
        y_test=y[cut2:],
        seed=0,
    )


def trained(config: NetworkConfig, data: CompressionData, epochs: int = 15) -> Network:
    network = Network(config, data.classification, seed=0)
    train(network, data.train_data(), TrainConfig(epochs=epochs, learning_rate=3e-3))
    return network


def tabular(task: str) -> tuple[Candidate, CompressionData]:
    """A trained 10-feature MLP for ``task`` with its splits."""
    x, y = blobs(task)
    data = data_for(x, y, task)
    network = trained(MLPConfig(n_inputs=10, n_outputs=data.n_outputs, hidden=(48, 24)), data)
    return Candidate.from_network(network, n_features=10), data


@pytest.fixture(scope="session")
def classification() -> tuple[Candidate, CompressionData]:
    return tabular("classification")


@pytest.fixture(scope="session")
def regression() -> tuple[Candidate, CompressionData]:
    return tabular("regression")


@pytest.fixture(scope="session")
def images() -> tuple[Candidate, CompressionData]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = data_for(x[:600].astype(np.float32), y[:600], "classification")
    network = trained(
        CNNConfig(input_shape=(1, 8, 8), n_outputs=10, channels=(8, 12), head_width=32),
        data,
        epochs=25,
    )
    return Candidate.from_network(network, n_features=64), data

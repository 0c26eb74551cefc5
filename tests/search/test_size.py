"""The size estimate (no torch) counts exactly the parameters of the built networks."""

from __future__ import annotations

import pytest

from app.contracts.networks import CNNConfig, MLPConfig
from app.training.models import Network, count_parameters
from app.training.size import cnn_size, mlp_size


@pytest.mark.parametrize(
    "config",
    [
        MLPConfig(10, 3, (16,)),
        MLPConfig(64, 10, (300, 100), batch_norm=True),
        MLPConfig(5, 1, (8, 8, 8, 8), dropout=0.2),
    ],
)
def test_mlp_estimate_is_exact(config: MLPConfig) -> None:
    estimate = mlp_size(
        config.n_inputs, config.hidden, config.n_outputs, batch_norm=config.batch_norm
    )
    assert estimate.params == count_parameters(Network(config, classification=True))


@pytest.mark.parametrize(
    "config",
    [
        CNNConfig((1, 8, 8), 10, (8, 16), kernel=3, pooling="max", head_width=32),
        CNNConfig(
            (3, 5, 7), 2, (4, 4, 4), kernel=5, pooling="none", head_width=16, batch_norm=True
        ),
        CNNConfig((1, 28, 28), 10, (6, 16, 32, 8), kernel=3, pooling="avg", head_width=64),
    ],
)
def test_cnn_estimate_is_exact(config: CNNConfig) -> None:
    estimate = cnn_size(
        config.input_shape,
        config.channels,
        kernel=config.kernel,
        pooling=config.pooling,
        head_width=config.head_width,
        n_outputs=config.n_outputs,
        batch_norm=config.batch_norm,
    )
    assert estimate.params == count_parameters(Network(config, classification=True))


def test_training_memory_grows_with_the_batch() -> None:
    size = mlp_size(64, (256, 256), 10, batch_norm=False)
    assert size.training_bytes(256) > size.training_bytes(32) > size.params * 20

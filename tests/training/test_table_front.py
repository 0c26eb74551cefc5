"""A table MLP's front: per-feature embeddings of numbers (periodic, piecewise-linear) and
of many-valued categories, robust input scaling; their sizes as estimated before a
network exists, their export, and feature selection through them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.compression.methods.features import first_layer_weight, narrowed
from app.contracts.networks import MLPConfig, TableFront, architecture_from, architecture_of
from app.training.export import check_parity, export_onnx
from app.training.models import INPUT_CLIP, Network, count_parameters
from app.training.size import architecture_size
from app.training.train import TrainConfig, TrainData, train

N_INPUTS = 10


def rows(count: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three numbers (one with outliers), a one-hot block of five slots, two more numbers."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, N_INPUTS)).astype(np.float32)
    x[:, 2] = np.where(rng.random(count) < 0.05, 500.0, x[:, 2])
    x[:, 3:8] = np.eye(5, dtype=np.float32)[rng.integers(0, 5, count)]
    y = ((np.sin(3 * x[:, 0]) + x[:, 1] ** 2 + x[:, 4] - x[:, 6]) > 1).astype(np.int64)
    return x, y


def front(embedding: str) -> TableFront:
    return TableFront(
        numeric=(0, 1, 2, 8),
        embedding=embedding,  # type: ignore[arg-type]
        width=4,
        size=6,
        sigma=0.3,
        categories=((3, 8),),
        category_width=3,
    )


def network(embedding: str, scaling: str = "robust") -> Network:
    config = MLPConfig(
        n_inputs=N_INPUTS,
        n_outputs=2,
        hidden=(16,),
        scaling=scaling,  # type: ignore[arg-type]
        front=front(embedding),
    )
    x, y = rows()
    built = Network(config, classification=True, seed=0)
    train(built, TrainData(x[:300], y[:300], x[300:], y[300:]), TrainConfig(8, 3e-3))
    return built


@pytest.mark.parametrize("embedding", ["periodic", "piecewise"])
def test_the_size_estimate_counts_what_is_built_and_the_config_round_trips(
    embedding: str,
) -> None:
    built = network(embedding)
    assert architecture_size(built.config).params == count_parameters(built)
    assert architecture_from(architecture_of(built.config)) == built.config
    assert isinstance(built.config, MLPConfig)
    assert built.config.body_inputs == 1 + 4 * 4 + 3  # x9 passes; 4 embedded; one block


@pytest.mark.parametrize("embedding", ["periodic", "piecewise"])
def test_the_front_exports_to_onnx_with_parity(tmp_path: Path, embedding: str) -> None:
    built = network(embedding)
    path = tmp_path / "front.onnx"
    export_onnx(built, path)
    x, _ = rows(seed=5)
    assert check_parity(built, path, x) < 1e-5


def test_piecewise_bins_follow_the_training_quantiles() -> None:
    built = network("piecewise")
    assert built.front is not None
    x, _ = rows()
    scaled = np.clip(
        (x[:300] - built.input_mean.numpy()) * built.input_scale.numpy(), -INPUT_CLIP, INPUT_CLIP
    )
    edges = np.quantile(scaled[:, 0], np.linspace(0, 1, 7))
    np.testing.assert_allclose(built.front.left[0].numpy(), edges[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(built.front.span[0].numpy(), np.diff(edges), rtol=1e-4, atol=1e-6)


def test_robust_scaling_centres_on_the_median_and_keeps_outliers_from_the_scale() -> None:
    robust, standard = network("periodic"), network("periodic", scaling="standard")
    x, _ = rows()
    assert robust.input_mean[2] == pytest.approx(float(np.median(x[:300, 2])), abs=1e-6)
    # the 5% of 500s inflate the standard deviation, not the interquartile range
    assert float(robust.input_scale[2]) > 20 * float(standard.input_scale[2])
    # a one-hot slot's quartiles are equal: it falls back to the mean and deviation
    assert robust.input_mean[3] == pytest.approx(float(x[:300, 3].mean()), abs=1e-6)


@pytest.mark.parametrize("embedding", ["periodic", "piecewise"])
def test_selecting_features_keeps_the_embeddings_of_the_kept_columns(embedding: str) -> None:
    built = network(embedding)
    keep = np.array([0, 2, 3, 4, 5, 6, 7, 9])  # drops number 1 and number 8
    smaller = narrowed(built, keep)
    config = smaller.config
    assert isinstance(config, MLPConfig) and config.front is not None
    assert config.front.numeric == (0, 1) and config.front.categories == ((2, 7),)
    # The original, with the first layer blind to the dropped columns' embeddings,
    # computes what the smaller one computes from the kept columns.
    first = next(m for m in built.body if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight[:, 1 + 1 * 4 : 1 + 2 * 4] = 0  # number 1's embedding
        first.weight[:, 1 + 3 * 4 : 1 + 4 * 4] = 0  # number 8's
    x, _ = rows(seed=7)
    with torch.no_grad():
        expected = built.predict(torch.from_numpy(x)).numpy()
        actual = smaller.predict(torch.from_numpy(x[:, keep])).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_first_layer_weight_is_per_input_through_the_embeddings() -> None:
    built = network("periodic")
    per_input = first_layer_weight(built)
    assert per_input.shape == (N_INPUTS,) and np.all(per_input > 0)

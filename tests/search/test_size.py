"""The size estimate (no torch) counts exactly the parameters of the built networks, and
the smallest networks a search space allows are found whatever form each dimension takes
(``app.search.size``: submit refuses a space only when none of them fits the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.contracts.networks import CNNConfig, MLPConfig
from app.contracts.params import ParamValue
from app.core.config import load_settings
from app.preprocessing.fit import fit_encoding
from app.search.front import front_for
from app.search.size import lowest_batch, networks_in_space, space_too_big
from app.search.space import apply_overrides, default_space
from app.training.models import Network, count_parameters
from app.training.size import cnn_size, mlp_size
from tests.preprocessing.test_encoding import typed_table


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


@pytest.mark.parametrize(
    "width",
    [16, {"choices": [64, 16]}, {"low": 16, "high": 64}, {"low": 16, "high": 64, "log": True}],
)
@pytest.mark.parametrize("n_layers", [1, {"choices": [2, 1]}, {"low": 1, "high": 3}])
def test_the_smallest_mlp_reads_every_form(width: Any, n_layers: Any) -> None:
    space = apply_overrides(default_space(None, 10), {"width": width, "n_layers": n_layers})
    sizes = networks_in_space(space, n_inputs=4, n_outputs=3, input_shape=None)
    smallest = min(size.params for size in sizes)
    assert smallest == mlp_size(4, (16,), 3, batch_norm=False).params


@pytest.mark.parametrize(
    ("batch_size", "lowest"),
    [(24, 24), ({"choices": [64, 8]}, 8), ({"low": 16, "high": 128, "log": True}, 16)],
)
def test_the_lowest_batch_reads_every_form(batch_size: Any, lowest: int) -> None:
    space = apply_overrides(default_space(None, 10), {"batch_size": batch_size})
    assert lowest_batch(space) == lowest


def test_a_deeper_cnn_can_be_the_smaller_and_the_space_is_not_refused(tmp_path: Path) -> None:
    # On a 1x32x32 image a second pooled block shrinks the head's input fourfold.
    overrides = {"n_blocks": {"low": 1, "high": 2}, "channels": 8, "kernel": 3}
    space = apply_overrides(default_space([1, 32, 32], 10), overrides)
    shape = (1, 32, 32)
    one = cnn_size(
        shape, (8,), kernel=3, pooling="max", head_width=16, n_outputs=2, batch_norm=False
    )
    two = cnn_size(
        shape, (8, 8), kernel=3, pooling="max", head_width=16, n_outputs=2, batch_norm=False
    )
    assert two.params < one.params
    sizes = networks_in_space(space, n_inputs=1024, n_outputs=2, input_shape=shape)
    assert min(size.params for size in sizes) == two.params
    settings = load_settings(data_dir=tmp_path, max_params=two.params, worker_memory_mb=1024)
    assert space_too_big(space, settings, n_inputs=1024, n_outputs=2, input_shape=shape) is None
    only_one = apply_overrides(space, {"n_blocks": 1})
    problem = space_too_big(only_one, settings, n_inputs=1024, n_outputs=2, input_shape=shape)
    assert problem is not None and "KILN_MAX_PARAMS" in problem


def test_a_tables_embeddings_are_counted_and_the_narrowest_tried() -> None:
    encoding = fit_encoding(typed_table(rows=480, seed=4))
    embedded = {
        "numeric_embedding": "periodic",
        "embedding_width": {"choices": [32, 16]},
        "embedding_size": {"low": 24, "high": 64},
        "category_width": {"low": 0, "high": 8},
        "width": 16,
        "n_layers": 1,
    }
    space = apply_overrides(default_space(None, 10, table=True), embedded)
    sizes = networks_in_space(
        space, n_inputs=encoding.width, n_outputs=2, input_shape=None, encoding=encoding
    )
    params: dict[str, ParamValue] = {
        "numeric_embedding": "periodic",
        "embedding_width": 16,
        "embedding_size": 24,
    }
    smallest = min(size.params for size in sizes)
    fronts = [front_for({**params, "category_width": width}, encoding) for width in (0, 1)]
    assert smallest == min(
        mlp_size(encoding.width, (16,), 2, batch_norm=False, front=front).params for front in fronts
    )
    assert smallest > mlp_size(encoding.width, (16,), 2, batch_norm=False).params

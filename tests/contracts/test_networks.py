"""Network configurations are typed wherever they travel: a version's stored
``config.architecture`` reads back as the config it was written from, values stored before
networks were tagged read as MLPs, and an unknown kind or a bad field is refused by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.contracts.networks import (
    CNN_KIND,
    MLP_KIND,
    CNNConfig,
    MLPConfig,
    architecture_from,
    architecture_of,
)
from app.contracts.signature import VersionConfig

MLP = MLPConfig(n_inputs=4, n_outputs=3, hidden=(16, 8), dropout=0.1)
CNN = CNNConfig(input_shape=(1, 8, 8), n_outputs=10, channels=(4, 8), pooling="avg")


@pytest.mark.parametrize("config", [MLP, CNN])
def test_a_stored_architecture_reads_back_as_its_config(config: MLPConfig | CNNConfig) -> None:
    stored = VersionConfig(architecture=config).model_dump(mode="json")
    assert stored["architecture"]["kind"] == config.kind
    assert VersionConfig.model_validate(stored).architecture == config
    assert architecture_from(architecture_of(config)) == config


def test_the_tags_are_the_values_versions_have_always_stored() -> None:
    assert (MLP.kind, CNN.kind) == (MLP_KIND, CNN_KIND) == ("MLPConfig", "CNNConfig")


def test_an_untagged_stored_value_is_an_mlp() -> None:
    old = {
        "n_inputs": 4,
        "n_outputs": 3,
        "hidden": [16, 8],
        "activation": "relu",
        "dropout": 0.1,
        "batch_norm": False,
    }
    assert VersionConfig.model_validate({"architecture": old}).architecture == MLP


def test_the_body_layers_a_transfer_keeps() -> None:
    assert (MLP.body_layers, CNN.body_layers) == (2, 3)
    assert CNN.n_inputs == 64


@pytest.mark.parametrize(
    ("stored", "named"),
    [
        ({"kind": "RNNConfig", "n_inputs": 4}, "RNNConfig"),
        ({"kind": "MLPConfig", "n_inputs": "four", "n_outputs": 3, "hidden": [2]}, "n_inputs"),
        (
            {"kind": "CNNConfig", "input_shape": [8, 8], "n_outputs": 2, "channels": [4]},
            "input_shape",
        ),
    ],
)
def test_a_bad_architecture_is_refused_naming_what(stored: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        VersionConfig.model_validate({"architecture": stored})

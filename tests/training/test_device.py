"""KILN_DEVICE: where workers train. Everything runs on CPU-only machines; asking for CUDA
on one is a clear error naming the setting, not a silent fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.contracts.networks import MLPConfig
from app.core.config import SettingsError, load_settings
from app.training.device import DeviceUnavailable, describe_device, resolve_device
from app.training.models import Network
from app.training.train import TrainConfig, TrainData, train


def test_cpu_and_auto_resolve_to_what_the_machine_has() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert describe_device(torch.device("cpu")) == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_names_the_setting() -> None:
    with pytest.raises(DeviceUnavailable, match="KILN_DEVICE=cuda but torch sees no CUDA"):
        resolve_device("cuda")


def test_an_unknown_device_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KILN_DEVICE"):
        load_settings(data_dir=tmp_path, device="tpu")


def test_training_returns_the_network_on_the_cpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    network = Network(MLPConfig(4, 2, (8,)), classification=True)
    device = str(resolve_device("auto"))
    train(
        network,
        TrainData(x[:150], y[:150], x[150:], y[150:]),
        TrainConfig(epochs=2, learning_rate=0.01, device=device),
    )
    assert all(p.device.type == "cpu" for p in network.parameters())
    assert not network.training

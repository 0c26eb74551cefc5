"""Training, ONNX export parity and weight round trips."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from app.contracts.networks import MLPConfig
from app.training.export import check_parity, export_onnx
from app.training.models import Network
from app.training.train import TrainConfig, TrainData, load_weights, save_weights, train


class Exploit:
    """Unpickling this would run a command."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.normal(size=(n, 5)) + y[:, None] * 2.5 + 100.0).astype(np.float32)
    return x, y


def test_classifier_learns_and_exports_with_parity(tmp_path: Path) -> None:
    x, y = blobs()
    network = Network(MLPConfig(5, 3, (16,), "gelu", 0.1), classification=True)
    result = train(
        network,
        TrainData(x[:90], y[:90], x[90:], y[90:]),
        TrainConfig(epochs=30, learning_rate=0.01, seed=0),
    )
    assert result.score >= 0.9 and len(result.history) == 30
    path = tmp_path / "m.onnx"
    export_onnx(network, path)
    assert check_parity(network, path, x) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 5
    for batch in (1, 7, 64):  # dynamic batch dimension
        output = session.run(None, {"input": x[:batch]})[0]
        assert output.shape == (batch, 3)
        assert np.allclose(output.sum(axis=1), 1.0, atol=1e-5)


def test_regressor_predicts_in_target_units(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = 1000.0 + 50.0 * x[:, 0] - 20.0 * x[:, 1]
    network = Network(MLPConfig(3, 1, (32,), "relu"), classification=False)
    result = train(
        network,
        TrainData(x[:150], y[:150], x[150:], y[150:]),
        TrainConfig(epochs=80, learning_rate=0.01),
    )
    assert result.score < 15.0  # RMSE in target units; the target's std is about 54
    path = tmp_path / "r.onnx"
    export_onnx(network, path)
    check_parity(network, path, x[:32])


def test_weights_round_trip_without_pickle() -> None:
    config = MLPConfig(4, 2, (8, 8), "tanh")
    first = Network(config, classification=True)
    second = Network(config, classification=True)
    load_weights(second, save_weights(first))
    sample = torch.randn(3, 4)
    assert torch.equal(first.predict(sample), second.predict(sample))
    with pytest.raises(pickle.UnpicklingError):  # arbitrary pickled objects are refused
        load_weights(second, pickle.dumps({"payload": Exploit()}))


def test_same_seed_same_model() -> None:
    """A seeded trial is reproducible whatever the global RNG did before it."""
    x, y = blobs()
    data = TrainData(x[:90], y[:90], x[90:], y[90:])
    config = MLPConfig(5, 3, (16, 8), "silu", 0.2)
    scores = []
    for _ in range(2):
        torch.rand(17)  # disturb the global RNG between runs
        network = Network(config, classification=True, seed=11)
        scores.append(
            (
                train(network, data, TrainConfig(epochs=5, learning_rate=0.01, seed=11)),
                network.predict(torch.from_numpy(x[:4])),
            )
        )
    assert scores[0][0].history == scores[1][0].history
    assert torch.equal(scores[0][1], scores[1][1])


def test_batch_norm_is_folded_into_the_exported_graph(tmp_path: Path) -> None:
    from app.contracts.networks import CNNConfig

    rng = np.random.default_rng(3)
    cases: list[tuple[MLPConfig | CNNConfig, int]] = [
        (MLPConfig(6, 3, (12, 8), batch_norm=True), 6),
        (CNNConfig((1, 4, 4), 3, (4,), head_width=8, batch_norm=True), 16),
    ]
    for config, width in cases:
        network = Network(config, classification=True, seed=1)
        network.train()
        with torch.no_grad():  # give the running statistics something to hold
            for _ in range(5):
                network(torch.from_numpy(rng.normal(2.0, 3.0, (32, width)).astype(np.float32)))
        network.eval()
        path = tmp_path / "folded.onnx"
        export_onnx(network, path)
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert "BatchNormalization" not in ops
        sample = rng.normal(2.0, 3.0, (20, width)).astype(np.float32)
        assert check_parity(network, path, sample) < 1e-4
        assert any(isinstance(module, torch.nn.BatchNorm1d) for module in network.body)

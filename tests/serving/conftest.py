"""A registered model version to serve, made with the real training and export code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.db import session_scope
from app.registry.service import VersionDraft, register_version
from app.storage import get_store
from app.training.export import export_onnx
from app.training.models import MLPConfig, Network
from app.training.train import TrainConfig, TrainData, train


@pytest.fixture(scope="session")
def classifier_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(150) % 3
    x = (rng.normal(size=(150, 4)) + y[:, None] * 3.0).astype(np.float32)
    network = Network(MLPConfig(4, 3, (16,)), classification=True)
    train(network, TrainData(x[:120], y[:120], x[120:], y[120:]),
          TrainConfig(epochs=20, learning_rate=0.02))
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    export_onnx(network, path)
    return path


def register(settings: Settings, onnx: Path, *, name: str = "flowers",
             labels: list | None = None, task: str = "classification") -> int:
    """Store ``onnx`` and register it as the next version of ``name``."""
    store = get_store(settings.artifact_url)
    with session_scope(settings.database_url) as session:
        artifact = store.put_file(f"test/{name}/{onnx.stat().st_mtime_ns}.onnx", onnx)
        outputs = 3 if task == "classification" else 1
        version = register_version(session, name, VersionDraft(
            task=task, source="upload", artifact=artifact, class_labels=labels,
            signature={"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                       "outputs": [{"name": "output", "datatype": "FP32",
                                    "shape": [-1, outputs]}]}))
        return version.version

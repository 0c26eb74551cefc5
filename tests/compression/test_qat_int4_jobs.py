"""A compress job with ``qat`` (after structured pruning) and ``int4`` registers measured
versions whose stored files are what the methods promise: an int8 QDQ graph and a graph of
MatMulNBits, smaller than the parent's. Real database, real broker, the real handler (in
this process, as a worker's task calls it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from sqlalchemy import select

from app.contracts.enums import JobStatus
from app.contracts.networks import MLPConfig
from app.contracts.signature import VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.datasets.service import create_dataset
from app.jobs.kinds import SubmitContext
from app.jobs.queue import JobQueue
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS, submit
from app.storage import get_store
from app.tables import Job, Model, ModelVersion
from app.training.export import export_onnx
from app.training.models import Network
from app.training.train import TrainConfig, TrainData, save_weights, train
from tests.conftest import register
from tests.helpers import blobs_csv


def _dataset(settings: Settings, folder: Path) -> int:
    upload = folder / "rows.csv"
    upload.write_bytes(blobs_csv(n_rows=240, labels=("a", "b", "c"), seed=5))
    with session_scope(settings.database_url) as session:
        dataset = create_dataset(
            session,
            get_store(settings),
            upload=upload,
            filename="rows.csv",
            target="label",
            name=None,
            task=None,
            input_shape=None,
        )
        return dataset.id


def _trained_version(settings: Settings, folder: Path) -> int:
    """A version with stored torch weights (as a search registers one)."""
    rng = np.random.default_rng(1)
    y = np.arange(240) % 3
    x = (rng.normal(scale=0.5, size=(240, 4)) + y[:, None] * 3.0).astype(np.float32)
    network = Network(MLPConfig(4, 3, (32, 16)), classification=True, seed=0)
    train(network, TrainData(x[:180], y[:180], x[180:], y[180:]), TrainConfig(10, 0.01))
    path = folder / "parent.onnx"
    export_onnx(network, path)
    weights = get_store(settings).put_bytes("test/parent/weights.pt", save_weights(network))
    config = VersionConfig(
        architecture=network.config, weights_key=weights.key, weights_sha256=weights.sha256
    )
    return register(
        settings, path, name="blobs", labels=["a", "b", "c"], source="search", config=config
    )


def test_qat_and_int4_variants_are_registered_measured_and_served_quantized(
    settings: Settings, tmp_path: Path
) -> None:
    dataset_id = _dataset(settings, tmp_path)
    version = _trained_version(settings, tmp_path)
    kind = JOB_KINDS["compress"]
    spec = kind.create_model.model_validate(
        {
            "kind": "compress",
            "source": {"model": "blobs", "version": version},
            "dataset_id": dataset_id,
            "compression": {
                "methods": [
                    [
                        {"method": "prune_structured", "fine_tune_epochs": 2},
                        {"method": "qat", "fine_tune_epochs": 2, "calibration_rows": 64},
                    ],
                    "int4",
                ],
                "max_accuracy_drop": 0.05,
            },
        }
    )
    with session_scope(settings.database_url) as session:
        job_id = submit(
            SubmitContext(session, JobQueue(settings), settings, get_store(settings)), spec
        ).id
    run_job(settings, job_id, kind.load_handler())
    store = get_store(settings)
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == JobStatus.SUCCEEDED, job and job.error
        rows = session.scalars(
            select(ModelVersion)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.name == "blobs")
            .order_by(ModelVersion.version)
        ).all()
        parent, *variants = rows
        by_method = {row.method: row for row in variants}
        assert set(by_method) == {"prune_structured", "qat", "int4"}
        files = {
            method: store.read_bytes(row.artifact_key, row.sha256)
            for method, row in by_method.items()
        }
        parent_size = len(store.read_bytes(parent.artifact_key, parent.sha256))
        qat, int4 = by_method["qat"], by_method["int4"]
        assert qat.parent_version_id == by_method["prune_structured"].id
        assert int4.parent_version_id == parent.id
        for row in (qat, int4):
            assert row.metrics is not None
            assert 0 <= row.metrics["accuracy"] <= 1
            assert row.metrics["size_bytes"] == len(files[row.method])
            assert row.metrics["latency_p50_ms"] > 0
        assert qat.config is not None and qat.config.compression is not None
        details = qat.config.compression["report"]
        assert len(details["alphas"]) == 2 and details["bits"] == 8
        assert int4.config is not None and int4.config.compression is not None
        assert int4.config.compression["report"]["block_size"] in (16, 32, 64, 128)
    qat_ops = {node.op_type for node in onnx.load_model_from_string(files["qat"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= qat_ops
    int4_ops = [node.op_type for node in onnx.load_model_from_string(files["int4"]).graph.node]
    assert int4_ops.count("MatMulNBits") == 3
    assert len(files["int4"]) < parent_size

"""Turning the winning trial into a registered version: export, check, measure, record."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.evaluation.latency import latency_ms
from app.evaluation.metrics import task_metrics
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.jobs.spec import SearchSpec
from app.registry.service import VersionDraft, register_version
from app.serving.runtime import open_session
from app.storage import ArtifactStore
from app.tables import Dataset, Trial
from app.training.export import INPUT_NAME, OUTPUT_NAME, ExportMismatch, check_parity, export_onnx
from app.training.models import Network, count_parameters
from app.training.train import save_weights

PARITY_ROWS = 256


@dataclass(frozen=True)
class SearchSubject:
    """What a search job works on, read once from the registry."""

    job_id: int
    model_name: str
    spec: SearchSpec
    dataset: Dataset
    started_at: datetime


def signature_for(network: Network) -> dict[str, Any]:
    """The input/output signature of an exported network (batch dimension is -1)."""
    return {
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                    "shape": [-1, network.config.n_inputs]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                     "shape": [-1, network.config.n_outputs]}],
    }


def finalize(context: JobContext, subject: SearchSubject, network: Network, *, best_trial: int,
             best_params: dict[str, Any], test_rows: np.ndarray, test_target: np.ndarray,
             store: ArtifactStore) -> Recorder:
    """Export the winner, check it against torch, measure it on the held-out split, store it,
    and return the recorder that registers the version when the job is marked succeeded."""
    base = f"jobs/{subject.job_id}/trial-{best_trial}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(network, path)
        try:
            parity = check_parity(network, path, test_rows[:PARITY_ROWS])
        except ExportMismatch as mismatch:
            raise JobFailed(f"export check failed: {mismatch}") from None
        session = open_session(path, context.settings.ort_threads)
        output = session.run([OUTPUT_NAME], {INPUT_NAME: test_rows})[0]
        metrics: dict[str, Any] = task_metrics(subject.dataset.task, output, test_target)
        metrics["test_rows"] = len(test_rows)
        metrics["onnx_max_abs_diff"] = parity
        latency = latency_ms(path, input_name=INPUT_NAME, row_shape=(network.config.n_inputs,),
                             threads=context.settings.ort_threads)
        artifact = store.put_file(f"{base}/model.onnx", path)
    store.put_bytes(f"{base}/weights.pt", save_weights(network))
    context.check()
    draft = VersionDraft(
        task=subject.dataset.task, source="search", artifact=artifact,
        signature=signature_for(network), metrics=metrics, n_params=count_parameters(network),
        latency_p50_ms=latency["p50"], class_labels=subject.dataset.class_labels,
        config={"params": best_params, "weights_key": f"{base}/weights.pt",
                "architecture": dataclasses.asdict(network.config)},
        dataset_id=subject.dataset.id, job_id=subject.job_id)

    def record(session: Session) -> dict[str, Any]:
        trial_id = session.scalar(select(Trial.id).where(Trial.job_id == subject.job_id,
                                                         Trial.number == best_trial))
        version = register_version(session, subject.model_name,
                                   dataclasses.replace(draft, trial_id=trial_id))
        return {"model_name": subject.model_name, "version": version.version,
                "trial": best_trial, "metrics": metrics}

    return record

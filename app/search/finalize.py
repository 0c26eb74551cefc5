"""Turning winning trials into registered versions: export, check, measure, record."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.evaluation.latency import latency_ms
from app.evaluation.metrics import task_metrics
from app.evaluation.sessions import open_session
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.registry.service import VersionDraft, register_version
from app.signature import Signature, VersionConfig
from app.storage import ArtifactStore
from app.tables import Dataset, Trial
from app.training.export import INPUT_NAME, OUTPUT_NAME, ExportMismatch, check_parity, export_onnx
from app.training.models import Network, architecture_of, count_parameters
from app.training.train import save_weights

PARITY_ROWS = 256


@dataclass(frozen=True)
class SearchSubject:
    """What a search job works on, read once from the registry."""

    job_id: int
    model_name: str
    dataset: Dataset
    split_seed: int


def signature_for(network: Network) -> Signature:
    """The input/output signature of an exported network (rows arrive flat)."""
    return Signature.of_tensors(input_name=INPUT_NAME, row_shape=(network.config.n_inputs,),
                                output_name=OUTPUT_NAME, width=network.config.n_outputs)


@dataclass(frozen=True)
class PreparedVersion:
    """A trial's network exported, checked and measured, waiting to be registered."""

    trial: int
    draft: VersionDraft
    metrics: dict[str, Any]


def prepare_version(context: JobContext, subject: SearchSubject, network: Network, *,
                    trial: int, params: dict[str, Any], validation: dict[str, Any],
                    test_rows: np.ndarray, test_target: np.ndarray,
                    store: ArtifactStore) -> PreparedVersion:
    """Export a trial's network, check it against torch, measure it on the held-out split
    and in onnxruntime, and store the ONNX file and the torch weights next to each other."""
    base = f"jobs/{subject.job_id}/trial-{trial}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(network, path)
        try:
            parity = check_parity(network, path, test_rows[:PARITY_ROWS])
        except ExportMismatch as mismatch:
            raise JobFailed(f"export check of trial {trial} failed: {mismatch}") from None
        session = open_session(path, context.settings.ort_threads)
        output = session.run([OUTPUT_NAME], {INPUT_NAME: test_rows})[0]
        metrics: dict[str, Any] = task_metrics(subject.dataset.task, output, test_target)
        latency = latency_ms(path, input_name=INPUT_NAME, row_shape=(network.config.n_inputs,),
                             threads=context.settings.ort_threads)
        metrics.update(test_rows=len(test_rows), onnx_max_abs_diff=parity,
                       latency_p50_ms=latency["p50"], latency_p95_ms=latency["p95"],
                       size_bytes=path.stat().st_size, params=count_parameters(network),
                       validation=validation)
        artifact = store.put_file(f"{base}/model.onnx", path)
    store.put_bytes(f"{base}/weights.pt", save_weights(network))
    context.check()
    draft = VersionDraft(
        task=subject.dataset.task, source="search", artifact=artifact,
        signature=signature_for(network), metrics=metrics, n_params=count_parameters(network),
        latency_p50_ms=latency["p50"], class_labels=subject.dataset.class_labels,
        config=VersionConfig(params=params, weights_key=f"{base}/weights.pt",
                             split_seed=subject.split_seed,
                             architecture=architecture_of(network.config)),
        dataset_id=subject.dataset.id, job_id=subject.job_id)
    return PreparedVersion(trial=trial, draft=draft, metrics=metrics)


def recorder_for(subject: SearchSubject, prepared: list[PreparedVersion],
                 summary: dict[str, Any]) -> Recorder:
    """The recorder that registers every prepared version when the job succeeds; the
    result names the first (the best, or the first of the Pareto front)."""

    def record(session: Session) -> dict[str, Any]:
        registered = []
        for item in prepared:
            trial_id = session.scalar(select(Trial.id).where(Trial.job_id == subject.job_id,
                                                             Trial.number == item.trial))
            version = register_version(session, subject.model_name,
                                       dataclasses.replace(item.draft, trial_id=trial_id))
            registered.append({"version": version.version, "trial": item.trial,
                               "metrics": item.metrics})
        first = registered[0]
        return {"model_name": subject.model_name, "version": first["version"],
                "trial": first["trial"], "metrics": first["metrics"],
                "versions": [entry["version"] for entry in registered], **summary}

    return record

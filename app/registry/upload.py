"""Validating an uploaded ONNX model before it becomes a version."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.contracts.enums import Task
from app.contracts.signature import Signature, VersionConfig
from app.core.config_footprint import DEFAULT_CPU_WATTS_PER_CORE, DEFAULT_POWERCAP_DIR
from app.core.db import Session
from app.core.errors import Conflict, InvalidInput
from app.core.names import MODEL_NAME
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import Footprint
from app.onnx_graphs.checks import MAX_LABELS
from app.registry.probe import probe_model
from app.registry.repository import ModelRepository
from app.registry.service import VersionDraft, register_version
from app.storage import ArtifactStore
from app.tables import ModelVersion


@dataclass(frozen=True)
class CheckedModel:
    """What validation learned about an uploaded model."""

    signature: Signature
    task: str
    class_labels: list[Any] | None
    n_params: int
    latency_p50_ms: float
    config: VersionConfig  # trainable (its architecture), or why not
    footprint: Footprint | None  # memory a run takes, energy per 1,000 rows


# The settings' defaults, for a probe called without settings.
DEFAULT_ENERGY = EnergySettings(DEFAULT_POWERCAP_DIR, DEFAULT_CPU_WATTS_PER_CORE)


@dataclass(frozen=True)
class ProbeLimits:
    """Bounds on the subprocess that first runs an uploaded graph."""

    threads: int
    memory_mb: int
    timeout_s: float
    run_timeout_s: float  # the gateway's deadline for one run of an uploaded graph
    model_memory_mb: int = 1024  # what a loaded upload may hold (KILN_UPLOAD_MODEL_MEMORY_MB)
    # Where RAPL is read, and the estimate's watts per core (KILN_POWERCAP_DIR and
    # KILN_CPU_WATTS_PER_CORE).
    energy: EnergySettings = DEFAULT_ENERGY


def _parse_labels(labels: str | None) -> list[Any] | None:
    if labels is None or not labels.strip():
        return None
    try:
        parsed = json.loads(labels)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"labels: not valid JSON ({error.msg})") from None
    if (
        not isinstance(parsed, list)
        or not 2 <= len(parsed) <= MAX_LABELS
        or not all(isinstance(item, str | int) and not isinstance(item, bool) for item in parsed)
    ):
        raise InvalidInput(f"labels: expected a JSON list of 2 to {MAX_LABELS} strings or integers")
    if len(set(parsed)) != len(parsed):
        raise InvalidInput("labels: repeated values")
    return parsed


def _task_and_labels(
    signature: Signature, labels: str | None, task: str | None
) -> tuple[str, list[Any] | None]:
    class_labels = _parse_labels(labels)
    width = signature.width
    output_name = signature.output.name
    resolved = task or ("classification" if class_labels or width > 1 else "regression")
    if resolved == Task.CLASSIFICATION:
        class_labels = class_labels or list(range(width))
        if len(class_labels) != width:
            raise InvalidInput(
                f"labels: {len(class_labels)} given but output "
                f"{output_name[:80]!r} has {width} columns"
            )
    elif class_labels is not None or width != 1:
        raise InvalidInput(
            "a regression model takes no labels and must have one output "
            f"column (output {output_name[:80]!r} has {width})"
        )
    return resolved, class_labels


def check_onnx(
    path: Path, *, labels: str | None, task: str | None, limits: ProbeLimits
) -> CheckedModel:
    """Check the file in the probe subprocess (as data first: no external data anywhere,
    bounded shapes; then the checker, the classification, a run on test rows and timings);
    InvalidInput names the first problem and echoes nothing of the model's contents. The
    gateway never parses the file itself."""
    probed = probe_model(
        path,
        threads=limits.threads,
        memory_mb=limits.memory_mb,
        timeout_s=limits.timeout_s,
        run_timeout_s=limits.run_timeout_s,
        model_memory_mb=limits.model_memory_mb,
        energy=limits.energy,
    )
    signature = probed.signature
    resolved, class_labels = _task_and_labels(signature, labels, task)
    return CheckedModel(
        signature=signature,
        task=resolved,
        class_labels=class_labels,
        config=probed.form.model_copy(
            update={
                "bytes_per_row": probed.bytes_per_row,
                "graph_class": probed.graph_class,
                "graph_class_reason": probed.graph_class_reason,
                "rows_independent": probed.rows_independent,
                "seconds_per_row": probed.seconds_per_row,
                "load_bytes": probed.load_bytes,
            }
        ),
        n_params=probed.n_params,
        latency_p50_ms=probed.latency_p50_ms,
        footprint=probed.footprint,
    )


def upload_version(
    session: Session,
    store: ArtifactStore,
    *,
    name: str,
    upload: Path,
    labels: str | None,
    task: str | None,
    limits: ProbeLimits,
) -> ModelVersion:
    """Validate an uploaded ONNX file and register it as the next version of ``name``."""
    MODEL_NAME.check(name, "name")
    checked = check_onnx(upload, labels=labels, task=task, limits=limits)
    existing = ModelRepository(session).get_by_name(name)
    if existing is not None and existing.task != checked.task:
        raise Conflict(f"model {name!r} is a {existing.task} model; this upload is {checked.task}")
    artifact = store.put_file(f"uploads/{name}/{uuid.uuid4().hex}.onnx", upload)
    return register_version(
        session,
        name,
        VersionDraft(
            task=checked.task,
            source="upload",
            artifact=artifact,
            signature=checked.signature,
            metrics=checked.footprint.metrics() if checked.footprint is not None else {},
            n_params=checked.n_params,
            latency_p50_ms=checked.latency_p50_ms,
            class_labels=checked.class_labels,
            config=checked.config,
        ),
    )

"""Compression inside jobs: a stand-alone ``compress`` job on any registered version, and the
compression of a search's winner. Both register every variant when the job succeeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.compression.base import Candidate, CompressionData
from app.compression.explanations import with_importance
from app.compression.footprints import with_footprints
from app.compression.kind import COMPRESS
from app.compression.pipeline import Outcome, compress
from app.compression.record import (
    Lineage,
    PreparedVariant,
    prepare_variants,
    register_variants,
    report,
)
from app.compression.spec import CompressionSpec
from app.contracts.enums import Task
from app.contracts.results import (
    CompressionFields,
    CompressResult,
    SearchResult,
    SkippedChain,
    StoredResult,
)
from app.contracts.signature import VersionConfig
from app.core.db import Session, session_scope
from app.core.errors import BrokenInvariant
from app.datasets.repository import DatasetRepository
from app.datasets.service import DatasetArrays, load_arrays, load_raw
from app.datasets.splits import SplitIndices, split_indices
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, Recorder
from app.preprocessing.graph import detach
from app.registry.service import get_version
from app.registry.serving_note import serving_note
from app.storage import ArtifactStore, get_store
from app.tables import Dataset, ModelVersion
from app.training.export import INPUT_NAME
from app.training.from_onnx import network_from_onnx
from app.training.models import Network
from app.training.train import load_weights


def compression_data(
    arrays: DatasetArrays,
    splits: SplitIndices,
    dataset: Dataset,
    store: ArtifactStore,
    *,
    seed: int,
    threads: int,
    max_accuracy_drop: float,
) -> CompressionData:
    """A dataset's rows cut into the parent's train / validation / test splits (with the
    test rows' raw columns, for a table with a preprocessing)."""
    features, target = arrays.features, arrays.target
    raw_test = load_raw(store, dataset, splits.test) if dataset.encoding is not None else None
    return CompressionData(
        task=dataset.task,
        x_train=features[splits.train],
        y_train=target[splits.train],
        x_val=features[splits.validation],
        y_val=target[splits.validation],
        x_test=features[splits.test],
        y_test=target[splits.test],
        seed=seed,
        threads=threads,
        max_accuracy_drop=max_accuracy_drop,
        encoding=dataset.encoding,
        raw_test=raw_test,
    )


def candidate_from_version(version: ModelVersion, store: ArtifactStore) -> Candidate:
    """A registered version as a chain's starting point, with its torch form when stored.
    For a version with a preprocessing, the chain works on its network part."""
    signature = version.signature
    stored = version.config or VersionConfig()
    onnx = store.read_bytes(version.artifact_key, version.sha256)
    if stored.encoding is not None:
        return Candidate(
            onnx=detach(onnx, stored.encoding),
            input_name=INPUT_NAME,
            output_name=signature.output.name,
            n_features=stored.encoding.width,
            params=version.n_params,
            network=stored_network(version, store),
            columns=_columns(stored),
        )
    return Candidate(
        onnx=onnx,
        input_name=signature.input.name,
        output_name=signature.output.name,
        n_features=signature.row_shape[-1],
        params=version.n_params,
        network=stored_network(version, store),
        columns=_columns(stored),
    )


def _columns(stored: VersionConfig) -> np.ndarray | None:
    return None if stored.columns is None else np.asarray(stored.columns, dtype=np.int64)


def stored_network(version: ModelVersion, store: ArtifactStore) -> Network | None:
    """A version's trainable torch network: its stored weights, or the network an
    uploaded graph of ordinary layers holds (rebuilt, and checked against the graph);
    None when it has neither."""
    stored = version.config or VersionConfig()
    if stored.weights_in_onnx:
        return network_from_onnx(
            store.read_bytes(version.artifact_key, version.sha256),
            list(version.signature.row_shape),
            version.task == Task.CLASSIFICATION,
        )
    if stored.architecture is None or stored.weights_key is None:
        return None
    network = Network(stored.architecture, version.task == Task.CLASSIFICATION)
    load_weights(network, store.read_bytes(stored.weights_key, stored.weights_sha256))
    network.eval()
    return network


@dataclass
class Compression:
    """A finished compression waiting for its job to succeed."""

    spec: CompressionSpec
    lineage: Lineage
    outcome: Outcome
    prepared: list[PreparedVariant]
    skipped: list[SkippedChain] = field(default_factory=list)  # chains the parent cannot take

    def result_fields(self, session: Session, root: ModelVersion) -> CompressionFields:
        """Register the variants under ``root``; what the job's result says of them."""
        registered = register_variants(session, self.lineage, root, self.prepared)
        table = report(
            self.outcome,
            self.spec,
            model_name=self.lineage.model_name,
            root_version=root.version,
            versions=[version.version for version in registered],
        )
        if self.skipped:
            table = table.model_copy(update={"skipped": self.skipped})
        return CompressionFields(
            recommended_version=table.recommended_version,
            recommendation_reason=table.reason,
            compression=table,
        )


def run_compression(
    context: JobContext,
    parent: Candidate,
    data: CompressionData,
    spec: CompressionSpec,
    lineage: Lineage,
    store: ArtifactStore,
    progress: Callable[[int], None] = lambda done: None,
    *,
    parent_metrics: dict[str, Any] | None = None,
) -> Compression:
    """Make, measure and store every variant; registration waits for the job's success.
    ``parent_metrics``: the parent's, whose explanation record (its background) the
    variants are explained against, their importance computed here."""
    outcome = compress(parent, data, spec, context.check, progress)
    # Scoped by attempt, as a search's artifacts are: a stale attempt never overwrites them.
    folder = f"jobs/{context.job_id}/attempt-{context.attempt}/compression"
    prepared = prepare_variants(outcome, lineage, store, folder, data)
    context.check()
    prepared = with_footprints(
        prepared, outcome.variants, data, store, context.settings, context.check
    )
    prepared = with_importance(
        prepared,
        outcome.variants,
        data,
        store,
        lineage,
        parent_metrics,
        context.settings.ort_threads,
        context.check,
    )
    return Compression(spec=spec, lineage=lineage, outcome=outcome, prepared=prepared)


def _set_fields(fields: CompressionFields) -> dict[str, Any]:
    """The fields a compression set, as they are (for a result that takes them on)."""
    return {name: getattr(fields, name) for name in fields.model_fields_set}


def with_compression(base: Recorder, compression: Compression) -> Recorder:
    """A search's recorder that also registers the variants of the version it registers;
    a recommended variant is what its result sets beside the serving version."""

    def record(session: Session) -> StoredResult:
        result = base(session)
        if not isinstance(result, SearchResult):
            raise BrokenInvariant("a compression follows a search's recorder")
        name = compression.lineage.model_name
        root = get_version(session, name, result.version)
        fields = compression.result_fields(session, root)
        update = _set_fields(fields)
        if fields.recommended_version not in (None, root.version):
            update["serving"] = serving_note(session, name, fields.recommended_version)
        return result.model_copy(update=update)

    return record


def split_seed_of(version: ModelVersion, dataset_id: int, fallback: int) -> int:
    """The seed of the split a version was trained on, when it was trained on this dataset
    (so its test rows stay unseen); otherwise ``fallback``."""
    stored = version.config or VersionConfig()
    if version.dataset_id == dataset_id and stored.split_seed is not None:
        return stored.split_seed
    return fallback


def run_compress(context: JobContext) -> Recorder:
    """A ``compress`` job: load the source version and dataset, compress, record."""
    with session_scope(context.settings.database_url) as session:
        job = JobRepository(session).get_or_raise(context.job_id)
        if job.dataset_id is None:
            raise BrokenInvariant("job.dataset_id is None")
        spec = COMPRESS.read_spec(job)
        source = get_version(session, spec.source.model, spec.source.version)
        dataset = DatasetRepository(session).get(job.dataset_id)
        if dataset is None:
            raise BrokenInvariant("dataset is None")
        session.expunge_all()
    store = get_store(context.settings)
    arrays = load_arrays(store, dataset)
    seed = split_seed_of(source, dataset.id, spec.seed)
    splits = split_indices(arrays.target, Task(dataset.task), seed=seed, features=arrays.features)
    data = compression_data(
        arrays,
        splits,
        dataset,
        store,
        seed=seed,
        threads=context.settings.ort_threads,
        max_accuracy_drop=spec.compression.max_accuracy_drop,
    )
    lineage = Lineage(
        model_name=spec.source.model,
        task=source.task,
        signature=source.signature,
        class_labels=source.class_labels,
        dataset_id=dataset.id,
        job_id=context.job_id,
        split_seed=seed,
    )
    compression = run_compression(
        context,
        candidate_from_version(source, store),
        data,
        spec.compression,
        lineage,
        store,
        progress=lambda done: context.report(done=done),
        parent_metrics=source.metrics,
    )

    def record(session: Session) -> CompressResult:
        root = get_version(session, spec.source.model, spec.source.version)
        fields = compression.result_fields(session, root)
        rows = fields.compression.rows if fields.compression is not None else []
        recommended = fields.recommended_version
        return CompressResult(
            model_name=spec.source.model,
            parent_version=root.version,
            versions=[row.version for row in rows[1:]],
            serving=serving_note(
                session, spec.source.model, None if recommended == root.version else recommended
            ),
            **_set_fields(fields),
        )

    return record

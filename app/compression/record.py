"""Storing variants, registering them as versions with their lineage, and the comparison
report that the job's result (and ``GET /v1/jobs/{id}/report``) carries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.compression.base import Candidate, CompressionData
from app.compression.choose import passed_over
from app.compression.measures import Measured
from app.compression.pipeline import Outcome, Variant
from app.compression.spec import CompressionSpec
from app.contracts.networks import NetworkConfig
from app.contracts.results import CompressionTable, ReportRow
from app.contracts.signature import Signature, VersionConfig
from app.core.db import Session
from app.evaluation.scores import ClassificationScores
from app.registry.service import VersionDraft, register_version
from app.storage import ArtifactStore
from app.tables import ModelVersion
from app.training.train import save_weights


@dataclass(frozen=True)
class Lineage:
    """What every variant of one job shares: where it goes and what it was made from."""

    model_name: str
    task: str
    signature: Signature
    class_labels: list[Any] | None
    dataset_id: int
    job_id: int
    split_seed: int


@dataclass(frozen=True)
class PreparedVariant:
    """A stored variant waiting to be registered (``parent``: index of the variant it was
    made from; None: the job's parent version)."""

    draft: VersionDraft
    parent: int | None


def network_fields(variant: Variant) -> tuple[NetworkConfig | None, list[int] | None]:
    """What a later job needs to keep training a variant's torch form: its architecture
    and the columns it reads (None, None after a graph rewrite)."""
    candidate = variant.candidate
    if candidate.network is None:
        return None, None
    columns = None if candidate.columns is None else [int(column) for column in candidate.columns]
    return candidate.network.config, columns


def signature_of(candidate: Candidate, lineage: Lineage, data: CompressionData) -> Signature:
    """The parent's signature; for a table with a preprocessing, the columns a variant no
    longer reads (feature selection) are marked optional."""
    if data.encoding is None:
        return lineage.signature
    return Signature.of_columns(
        data.encoding,
        used=data.used_columns(candidate),
        output_name=lineage.signature.output.name,
        width=lineage.signature.width,
    )


def prepare_variants(
    outcome: Outcome, lineage: Lineage, store: ArtifactStore, base_key: str, data: CompressionData
) -> list[PreparedVariant]:
    """Store every variant's ONNX file as it will serve (and torch weights, while it has
    them)."""
    prepared = []
    for index, variant in enumerate(outcome.variants):
        folder = f"{base_key}/variant-{index}"
        artifact = store.put_bytes(f"{folder}/model.onnx", data.served(variant.candidate))
        weights_key, weights_sha256 = None, None
        if variant.candidate.network is not None:
            weights_key = f"{folder}/weights.pt"
            weights_sha256 = store.put_bytes(
                weights_key, save_weights(variant.candidate.network)
            ).sha256
        architecture, columns = network_fields(variant)
        config = VersionConfig(
            compression={
                "method": variant.method,
                "settings": variant.settings,
                "chain": variant.chain,
                "report": variant.candidate.report,
            },
            split_seed=lineage.split_seed,
            weights_key=weights_key,
            weights_sha256=weights_sha256,
            encoding=data.encoding,
            architecture=architecture,
            columns=columns,
        )
        prepared.append(
            PreparedVariant(
                parent=variant.parent,
                draft=VersionDraft(
                    task=lineage.task,
                    source="compression",
                    artifact=artifact,
                    signature=signature_of(variant.candidate, lineage, data),
                    metrics=variant.measured.as_json(),
                    n_params=variant.measured.params,
                    latency_p50_ms=variant.measured.latency_p50_ms,
                    class_labels=lineage.class_labels,
                    config=config,
                    dataset_id=lineage.dataset_id,
                    job_id=lineage.job_id,
                    method=variant.method,
                ),
            )
        )
    return prepared


def register_variants(
    session: Session, lineage: Lineage, root: ModelVersion, prepared: list[PreparedVariant]
) -> list[ModelVersion]:
    """Register the variants in order, each pointing at the version it was made from."""
    registered: list[ModelVersion] = []
    for item in prepared:
        parent = root if item.parent is None else registered[item.parent]
        registered.append(
            register_version(
                session,
                lineage.model_name,
                dataclasses.replace(item.draft, parent_version_id=parent.id),
            )
        )
    return registered


def report(
    outcome: Outcome,
    spec: CompressionSpec,
    *,
    model_name: str,
    root_version: int,
    versions: list[int],
) -> CompressionTable:
    """The comparison of the parent and its variants, with the recommendation."""
    parent = outcome.parent_measured
    rows = [_row(model_name, root_version, "parent", None, [], None, parent, parent)]
    for variant, verdict, number in zip(outcome.variants, outcome.verdicts, versions, strict=True):
        parent_number = root_version if variant.parent is None else versions[variant.parent]
        row = _row(
            model_name,
            number,
            "variant",
            variant.method,
            variant.chain,
            parent_number,
            variant.measured,
            parent,
        )
        row.accuracy_drop = verdict.drop
        row.smaller = verdict.smaller
        row.faster = verdict.faster
        row.qualifies = verdict.qualifies
        row.not_recommended_because = verdict.reason
        row.settings = variant.settings
        row.details = variant.candidate.report
        rows.append(row)
    recommended = root_version if outcome.recommended is None else versions[outcome.recommended]
    _say_why_not(rows, outcome, spec, f"v{recommended} (recommended)")
    for row in rows:
        row.recommended = row.version == recommended
    return CompressionTable(
        model_name=model_name,
        parent_version=root_version,
        max_accuracy_drop=spec.max_accuracy_drop,
        prefer=spec.prefer,
        recommended_version=recommended,
        reason=outcome.reason,
        rows=rows,
    )


def _say_why_not(rows: list[ReportRow], outcome: Outcome, spec: CompressionSpec, name: str) -> None:
    """Give the parent, and every variant that qualified beside the recommended one, the
    reason it lost (a variant that did not qualify already says why)."""
    best = outcome.recommended
    if best is None:
        return
    chosen = outcome.verdicts[best]
    gains = " and ".join(
        word for word, won in (("smaller", chosen.smaller), ("faster", chosen.faster)) if won
    )
    rows[0].not_recommended_because = f"{name} is within max_accuracy_drop and {gains}"
    measured = [variant.measured for variant in outcome.variants]
    reasons = passed_over(outcome.verdicts, measured, spec.prefer, best, name)
    for index, reason in reasons.items():
        rows[index + 1].not_recommended_because = reason


def _row(
    model_name: str,
    version: int,
    role: str,
    method: str | None,
    chain: list[str],
    parent_version: int | None,
    measured: Measured,
    parent: Measured,
) -> ReportRow:
    """A row with what was measured of the model and its ratios to the parent;
    ``recommended`` False until the choice is known. A measure the model does not have (a
    regressor's accuracy, a parent's agreement, an unpruned model's sparsity) is left
    unset, so the stored report leaves it out."""
    timings, parent_timings = measured.timed, parent.timed
    row = ReportRow(
        model=model_name,
        version=version,
        role=role,
        method=method,
        chain=chain,
        parent_version=parent_version,
        params=measured.params,
        size_bytes=measured.size_bytes,
        gzip_bytes=measured.gzip_bytes,
        latency_p50_ms=timings.single.p50,
        latency_p95_ms=timings.single.p95,
        latency_b64_p50_ms=timings.batch64.p50,
        latency_b64_p95_ms=timings.batch64.p95,
        size_ratio=parent.size_bytes / measured.size_bytes,
        gzip_ratio=parent.gzip_bytes / measured.gzip_bytes,
        speedup=parent_timings.single.p50 / timings.single.p50,
        speedup_b64=parent_timings.batch64.p50 / timings.batch64.p50,
        recommended=False,
    )
    scores = measured.scores
    if isinstance(scores, ClassificationScores):
        row.accuracy, row.f1_macro = scores.accuracy, scores.f1_macro
    else:
        row.rmse, row.r2 = scores.rmse, scores.r2
    # Assigned only when measured: an assignment marks the field set (pydantic).
    if measured.sparsity is not None:
        row.sparsity = measured.sparsity
    if measured.nonzero_params is not None:
        row.nonzero_params = measured.nonzero_params
    if measured.agreement is not None:
        row.agreement = measured.agreement
    return row

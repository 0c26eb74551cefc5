"""Turning winning trials into registered versions: export, check, measure, record."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.contracts.encoding import TableEncoding
from app.contracts.enums import AVERAGE_FAMILY
from app.contracts.params import ParamValue
from app.contracts.results import (
    ParetoPoint,
    PlanSummary,
    ReferenceScores,
    SearchResult,
    Selection,
)
from app.contracts.signature import AverageMember, Signature, VersionConfig
from app.core.db import Session
from app.core.errors import BrokenInvariant
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import footprint_metrics
from app.evaluation.latency import timed
from app.evaluation.metrics import task_scores
from app.evaluation.sessions import open_session
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.jobs.trial_repository import TrialRepository
from app.preprocessing.encode import Raw, stress_rows
from app.preprocessing.graph import with_rows
from app.registry.service import VersionDraft, register_version
from app.registry.serving_note import serving_note
from app.search.budget import Phases
from app.search.ensembles import AverageParams, AverageValidation
from app.search.explanations import stored_explanations
from app.search.space import SearchSpace
from app.search.trial_metrics import TrialMetrics
from app.storage import ArtifactStore
from app.tables import Dataset
from app.training.ensemble import (
    Fitted,
    MixedAverage,
    export_model,
    parameters_of,
    predicted,
    width_of,
)
from app.training.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportMismatch,
    check_parity,
    check_table_parity,
)
from app.training.models import Network
from app.training.table_models import TableModel
from app.training.train import save_weights

PARITY_ROWS = 256


@dataclass(frozen=True)
class SearchSubject:
    """What a search job works on, read once from the registry."""

    job_id: int
    model_name: str
    dataset: Dataset
    split_seed: int


def signature_for(network: Fitted) -> Signature:
    """The input/output signature of an exported model (rows arrive flat)."""
    n_inputs, n_outputs = width_of(network)
    return Signature.of_tensors(
        input_name=INPUT_NAME, row_shape=(n_inputs,), output_name=OUTPUT_NAME, width=n_outputs
    )


def family_name(space: SearchSpace, params: dict[str, ParamValue] | AverageParams) -> str:
    """What the registry records as the version's family: a trial's, or its members' when
    they share one."""
    if isinstance(params, AverageParams):
        families = {space.family_of(member) for member in params.members}
        return str(families.pop()) if len(families) == 1 else AVERAGE_FAMILY
    return str(space.family_of(params))


def untrainable_reason(model: Fitted) -> str | None:
    """Why a version cannot be fine-tuned or compressed by methods that need torch weights."""
    if isinstance(model, TableModel):
        return (
            f"it is a {model.family} model of the table's features, not a network: "
            "distill it into one, or search again"
        )
    if isinstance(model, MixedAverage):
        return "it averages models of several families: distill it into one network"
    return None


@dataclass(frozen=True)
class FitNote:
    """What the served model was fitted on once its configuration was chosen, and (when
    that includes the test rows) the same configuration fitted without them, which the
    held-out metrics come from."""

    fitted_on: Literal["all_rows", "non_test_rows"]
    rows: int
    held_out_model: Fitted | None = None  # None: the served model itself is scored
    held_out_rows: int | None = None  # the rows that model was fitted on

    def held_out_from(self) -> str | None:
        if self.held_out_model is None:
            return None
        return (
            f"the same configuration fitted on the {self.held_out_rows} non-test rows; "
            f"the served model was fitted on all {self.rows} labelled rows, test rows "
            "included (search.refit 'full')"
        )


@dataclass(frozen=True)
class PreparedVersion:
    """A trial's network exported, checked and measured, waiting to be registered."""

    trial: int
    draft: VersionDraft
    metrics: dict[str, Any]
    network_onnx: bytes  # the network part (features in): where compression starts


@dataclass(frozen=True)
class Served:
    """The file a version serves, its signature, test feeds and its export check."""

    onnx: bytes
    signature: Signature
    feeds: dict[str, np.ndarray]
    parity: float


def served_form(
    network: Fitted,
    path: Path,
    encoding: TableEncoding | None,
    test_rows: np.ndarray,
    raw_test: Raw | None,
) -> Served:
    """The exported network at ``path`` as it will serve: as it is, or behind the table's
    preprocessing (one input per source column), checked against torch either way."""
    if encoding is None:
        parity = check_parity(network, path, test_rows[:PARITY_ROWS])
        return Served(path.read_bytes(), signature_for(network), {INPUT_NAME: test_rows}, parity)
    if raw_test is None:
        raise BrokenInvariant("raw_test is None")
    onnx, test_feeds = with_rows(path.read_bytes(), encoding, raw_test)
    parity = check_table_parity(
        network, onnx, encoding, stress_rows(encoding, raw_test, PARITY_ROWS)
    )
    signature = Signature.of_columns(
        encoding,
        used=encoding.sources_of(None),
        output_name=OUTPUT_NAME,
        width=width_of(network)[1],
    )
    return Served(onnx, signature, test_feeds, parity)


def prepare_version(
    context: JobContext,
    subject: SearchSubject,
    network: Fitted,
    *,
    trial: int,
    params: dict[str, ParamValue] | AverageParams,
    validation: TrialMetrics | AverageValidation,
    test_rows: np.ndarray,
    test_target: np.ndarray,
    store: ArtifactStore,
    raw_test: Raw | None = None,
    trained_on: str | None = None,
    family: str | None = None,
    members: list[AverageMember] | None = None,
    reference: ReferenceScores | None = None,
    fit: FitNote | None = None,
    background: dict[str, np.ndarray] | None = None,
) -> PreparedVersion:
    """Export a trial's network (or an ensemble led by it), check it against torch,
    measure it on the held-out split and in onnxruntime, and store the ONNX file and the
    torch weights next to each other (an ensemble keeps only its ONNX file: it is
    compressed as a graph, or distilled back into one network). Its metrics keep the
    evidence it was chosen on (``validation``, with the ``reference`` scores beside the
    winner's). With a ``fit`` whose served model saw the test rows, the held-out scores
    are its ``held_out_model``'s, and the metrics say so. With a ``background`` (the
    graph's feeds for training rows) it keeps what its explanations need
    (``app.search.explanations``)."""
    # Scoped by attempt: a stale attempt still running never overwrites what a later one
    # registered (the key is new, and its registration would be refused anyway).
    base = f"jobs/{subject.job_id}/attempt-{context.attempt}/trial-{trial}"
    encoding = subject.dataset.encoding
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.onnx"
        export_model(network, path)
        network_onnx = path.read_bytes()
        try:
            served = served_form(network, path, encoding, test_rows, raw_test)
        except ExportMismatch as mismatch:
            raise JobFailed(f"export check of trial {trial} failed: {mismatch}") from None
        path = Path(folder) / "model.onnx"
        path.write_bytes(served.onnx)
        if fit is not None and fit.held_out_model is not None:
            output = predicted(fit.held_out_model, test_rows)
        else:
            session = open_session(path, context.settings.ort_threads)
            output = session.run([OUTPUT_NAME], served.feeds)[0]
        scores = task_scores(subject.dataset.task, output, test_target)
        latency = timed(path, feeds=served.feeds, threads=context.settings.ort_threads)
        footprint = footprint_metrics(
            path,
            served.feeds,
            threads=context.settings.ort_threads,
            energy=EnergySettings.of(context.settings),
        )
        evidence = validation.stored()
        metrics = {
            **scores.as_json(),
            "test_rows": len(test_rows),
            **(
                {"held_out_from": fit.held_out_from()}
                if fit is not None and fit.held_out_model is not None
                else {}
            ),
            "onnx_max_abs_diff": served.parity,
            "latency_p50_ms": latency.p50,
            "latency_p95_ms": latency.p95,
            "size_bytes": path.stat().st_size,
            **footprint,
            "params": parameters_of(network),
            "validation": evidence
            if reference is None
            else {**evidence, "reference": reference.model_dump()},
        }
        artifact = store.put_file(f"{base}/model.onnx", path)
        metrics |= stored_explanations(
            store,
            base,
            network,
            path,
            served.signature,
            background=background,
            held_out=served.feeds,
            labels=subject.dataset.class_labels,
            encoding=encoding,
            threads=context.settings.ort_threads,
            names=subject.dataset.feature_names if encoding is None else None,
        )
    weights_key, weights_sha256, architecture = None, None, None
    if isinstance(network, Network):
        weights_key, architecture = f"{base}/weights.pt", network.config
        weights_sha256 = store.put_bytes(weights_key, save_weights(network)).sha256
    context.check()
    draft = VersionDraft(
        task=subject.dataset.task,
        source="search",
        artifact=artifact,
        signature=served.signature,
        metrics=metrics,
        n_params=parameters_of(network),
        latency_p50_ms=latency.p50,
        class_labels=subject.dataset.class_labels,
        config=VersionConfig(
            params=params.model_dump() if isinstance(params, AverageParams) else params,
            weights_key=weights_key,
            weights_sha256=weights_sha256,
            trained_on=trained_on,
            split_seed=subject.split_seed,
            encoding=encoding,
            architecture=architecture,
            family=family,
            members=members,
            untrainable=untrainable_reason(network),
            fitted_on=fit.fitted_on if fit is not None else None,
            fitted_rows=fit.rows if fit is not None else None,
        ),
        dataset_id=subject.dataset.id,
        job_id=subject.job_id,
    )
    return PreparedVersion(trial=trial, draft=draft, metrics=metrics, network_onnx=network_onnx)


@dataclass(frozen=True)
class SearchSummary:
    """What a search's result says of the search itself: its plan, how its winner was
    chosen, and with several objectives the Pareto front it registered."""

    plan: PlanSummary
    selection: Selection
    pareto: list[ParetoPoint] | None = None
    phases: Phases | None = None  # read when the result is recorded: every phase is done


def recorder_for(
    subject: SearchSubject, prepared: list[PreparedVersion], summary: SearchSummary
) -> Recorder:
    """The recorder that registers every prepared version when the job succeeds; the
    result names the first (the best, or the first of the Pareto front) and what serves
    beside it (only a model's first version takes over serving)."""

    def record(session: Session) -> SearchResult:
        versions = []
        for item in prepared:
            trial_id = TrialRepository(session).id_of(subject.job_id, item.trial)
            version = register_version(
                session, subject.model_name, dataclasses.replace(item.draft, trial_id=trial_id)
            )
            versions.append(version.version)
        first = prepared[0]
        result = SearchResult(
            model_name=subject.model_name,
            version=versions[0],
            trial=first.trial,
            metrics=first.metrics,
            versions=versions,
            plan=summary.plan,
            selection=summary.selection,
            serving=serving_note(session, subject.model_name, versions[0]),
            phases=list(summary.phases.done) if summary.phases is not None else None,
        )
        if summary.pareto is not None:  # set only then: a one-objective result has none
            result.pareto = summary.pareto
        return result

    return record

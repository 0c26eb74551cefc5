"""Submitting a batch prediction: the version and the input are checked and fixed before
anything is queued, so a job that starts can run to the end."""

from __future__ import annotations

from pathlib import Path

from app.batch.output import output_columns
from app.batch.plan import BatchPlan
from app.batch.reader import layout_for
from app.batch.spec import PREDICT_KIND, PredictJobCreate
from app.core.db import Session
from app.core.errors import BrokenInvariant, InvalidInput, NotFound
from app.datasets.repository import DatasetRepository
from app.datasets.service import original_key
from app.jobs.kinds import SubmitContext, enqueue
from app.preprocessing.csv_reader import read_header
from app.registry.service import resolve_serving_version
from app.tables import Job, ModelVersion


def input_key(job_id: int) -> str:
    return f"jobs/{job_id}/input.csv"


def _version(session: Session, spec: PredictJobCreate) -> ModelVersion:
    try:
        return resolve_serving_version(session, spec.model, spec.version)
    except NotFound as missing:
        field = "version" if spec.version is not None else "model"
        raise InvalidInput(f"{field}: {missing.message}") from None


def _feature_names(
    session: Session, version: ModelVersion, input_dataset: int | None
) -> list[str] | None:
    """A single-tensor model's columns: those of the dataset it learnt from, else those of
    the input dataset, else (an uploaded CSV for an uploaded model) the CSV's own."""
    if version.signature.by_column:
        return None
    for dataset_id in (version.dataset_id, input_dataset):
        dataset = DatasetRepository(session).get(dataset_id) if dataset_id else None
        if dataset is not None:
            return list(dataset.feature_names)
    return None


def submit_predict(
    context: SubmitContext,
    spec: PredictJobCreate,
    *,
    upload: Path | None = None,
    filename: str | None = None,
) -> Job:
    """Queue a batch prediction over dataset ``spec.dataset_id``'s CSV, or over ``upload``
    (stored as the job's input); InvalidInput names the field that does not fit."""
    session, store = context.session, context.store
    version = _version(session, spec)
    if not store.exists(version.artifact_key):
        raise InvalidInput(
            f"version {version.version} of {spec.model!r} has no artifact "
            "in the store; it cannot be served"
        )
    dataset_id = spec.dataset_id if upload is None else None
    if upload is None:
        if spec.dataset_id is None:
            raise InvalidInput(
                "dataset_id: give the dataset whose rows to predict, or upload "
                "a CSV to POST /v1/jobs/predict"
            )
        dataset = DatasetRepository(session).for_job(spec.dataset_id)
        source = store.local_path(original_key(dataset.id), dataset.sha256)
        name, digest = dataset.filename, dataset.sha256
    else:
        source, name, digest = upload, filename or "upload.csv", ""
    header, _ = read_header(source)
    features = _feature_names(session, version, dataset_id)
    layout_for(version.signature, header, spec.key_columns, features)
    refuse_output_names(spec.key_columns, version)
    plan = BatchPlan(
        model=spec.model,
        version=version.version,
        dataset_id=dataset_id,
        key_columns=spec.key_columns,
        output_format=spec.output_format,
        chunk_rows=spec.chunk_rows,
        input_key="",
        filename=Path(name).name[:255],
        feature_names=features,
    )
    job = enqueue(
        context,
        kind=PREDICT_KIND,
        spec=plan,
        dataset_id=dataset_id,
        model_name=spec.model,
        total=0,
    )
    if dataset_id is not None:
        key = original_key(dataset_id)
    else:
        key = input_key(job.id)
        if upload is None:
            raise BrokenInvariant("upload is None")
        digest = store.put_file(key, upload).sha256
    job.spec = plan.model_copy(update={"input_key": key, "input_sha256": digest}).model_dump()
    session.flush()
    return job


def refuse_output_names(keys: list[str], version: ModelVersion) -> None:
    """A key column named like a column the output writes would overwrite it or be
    dropped: refused, naming it (the CSV's column can be renamed, or left out)."""
    written = output_columns(version.task, version.class_labels)
    taken = [key for key in keys if key in written]
    if taken:
        raise InvalidInput(
            f"key_columns: {taken[0]!r} is a column the output writes "
            f"({', '.join(written)}); rename it in the CSV or leave it out "
            "of key_columns"
        )

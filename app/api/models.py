"""/v1/models: the registry's models, versions and artifacts."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.api.deps import ReadAccess, SessionDep, StoreDep
from app.api.errors_schema import V1_ERRORS
from app.api.params import IdPath, ModelName, Offset, PageLimit
from app.api.schemas import ModelRead, Page, PredictRequest, ServingOptions, VersionRead
from app.core.db import Session
from app.evaluation.footprint import Footprint
from app.explain.data import ExplainRecord
from app.registry import service
from app.registry.examples import version_example
from app.tables import Model, ModelVersion

router = APIRouter(prefix="/v1/models", tags=["models"], responses=V1_ERRORS)


def model_read(session: Session, model: Model) -> ModelRead:
    serving = service.default_serving_version(session, model)
    return ModelRead(
        name=model.name,
        task=model.task,
        latest_version=model.latest_version,
        serving_version=None if serving is None else serving.version,
        aliases=service.model_aliases(session, model),
        tags=model.tags or {},
        serving=ServingOptions(**model.serving) if model.serving else None,
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


def version_read(session: Session, name: str, version: ModelVersion) -> VersionRead:
    runs_in, why = service.isolation(session, version)
    return VersionRead(
        model=name,
        version=version.version,
        status=version.status,
        source=version.source,
        task=version.task,
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        n_params=version.n_params,
        latency_p50_ms=version.latency_p50_ms,
        metrics=version.metrics,
        footprint=Footprint.of_metrics(version.metrics),
        signature=version.signature,
        class_labels=version.class_labels,
        config=version.config.model_dump(mode="json", exclude_none=True)
        if version.config is not None
        else None,
        lineage=service.lineage(session, version),
        tags=version.tags or {},
        created_at=version.created_at,
        artifact_deleted_at=version.artifact_deleted_at,
        runs_in=runs_in,
        runs_in_reason=why,
        importance=record.importance if (record := ExplainRecord.of(version.metrics)) else None,
    )


@router.get("", response_model=Page[ModelRead], dependencies=[ReadAccess])
def list_models(session: SessionDep, limit: PageLimit = 50, offset: Offset = 0) -> Page[ModelRead]:
    """Models by name."""
    rows, total = service.list_models(session, limit=limit, offset=offset)
    return Page(
        items=[model_read(session, row) for row in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{name}", response_model=ModelRead, dependencies=[ReadAccess])
def get_model(session: SessionDep, name: ModelName) -> ModelRead:
    """One model with its aliases."""
    return model_read(session, service.get_model(session, name))


@router.get("/{name}/versions", response_model=Page[VersionRead], dependencies=[ReadAccess])
def list_versions(
    session: SessionDep,
    name: ModelName,
    limit: PageLimit = 50,
    offset: Offset = 0,
) -> Page[VersionRead]:
    """A model's versions, newest first."""
    rows, total = service.list_versions(session, name, limit=limit, offset=offset)
    return Page(
        items=[version_read(session, name, row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{name}/versions/{version}", response_model=VersionRead, dependencies=[ReadAccess])
def get_version(session: SessionDep, name: ModelName, version: IdPath) -> VersionRead:
    """One version: metrics, signature, labels and lineage."""
    return version_read(session, name, service.get_version(session, name, version))


@router.get(
    "/{name}/versions/{version}/example",
    response_model=PredictRequest,
    dependencies=[ReadAccess],
    summary="A ready predict request for this version",
)
def predict_example(session: SessionDep, name: ModelName, version: IdPath) -> PredictRequest:
    """A body for ``POST /v1/models/{name}/predict?version={version}`` built from the
    version's signature: for a table model one record with every column it reads (a
    typical value from its dataset's profile: the mean, the most frequent category, the
    earliest date), else one row of numbers. Send it as it is, or change the values."""
    row = service.get_version(session, name, version)
    return PredictRequest.model_validate(version_example(session, row))


@router.get(
    "/{name}/versions/{version}/artifact",
    dependencies=[ReadAccess],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    session: SessionDep, store: StoreDep, name: ModelName, version: IdPath
) -> FileResponse:
    """The version's ONNX file."""
    row = service.kept_artifact(service.get_version(session, name, version), name)
    return FileResponse(
        store.version_file(row.artifact_key, row.sha256, f"the ONNX file of {name} v{version}"),
        media_type="application/octet-stream",
        filename=f"{name}-v{version}.onnx",
        headers={"X-Content-SHA256": row.sha256},
    )

"""/v1/models/{name}: uploading versions, aliases and their history, archiving, tags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from app.api.deps import (
    ReadAccess,
    SessionDep,
    SettingsDep,
    StoreDep,
    WriteAccess,
)
from app.api.errors_schema import STORES_ARTIFACTS, V1_ERRORS
from app.api.models import model_read, version_read
from app.api.params import AliasName, IdPath, ModelName
from app.api.schemas import ModelRead, ServingOptions, TagsPatch, VersionRead
from app.api.state import gateway_of
from app.api.traffic_schemas import (
    AliasHistoryEntry,
    AliasRead,
    AliasSet,
    PromoteRequest,
    PromotionRead,
)
from app.api.uploads import spooled_upload
from app.contracts.enums import Task
from app.core.errors import NotFound
from app.evaluation.energy import EnergySettings
from app.jobs.files import delete_version_artifact
from app.registry import aliases, service, traffic
from app.registry.upload import ProbeLimits, upload_version
from app.serving import promotion

router = APIRouter(prefix="/v1/models", tags=["models"], responses=V1_ERRORS)


@router.post(
    "/{name}/versions",
    status_code=201,
    response_model=VersionRead,
    dependencies=[WriteAccess],
    responses=STORES_ARTIFACTS,
    summary="Upload an ONNX model as a new version",
)
def upload_model_version(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    name: ModelName,
    file: Annotated[UploadFile, File(description="A single self-contained .onnx file.")],
    labels: Annotated[
        str | None,
        Form(max_length=100_000, description="JSON list of class labels, one per output column."),
    ] = None,
    task: Annotated[Task | None, Form(description="Inferred from the output when absent.")] = None,
) -> VersionRead:
    """Validate the model (checker, no external data, loads in onnxruntime on CPU, fixed
    feature dimension) and register it as the next version of ``name``."""
    with spooled_upload(file, settings, ".onnx") as path:
        version = upload_version(
            session,
            store,
            name=name,
            upload=path,
            labels=labels,
            task=task,
            limits=ProbeLimits(
                threads=settings.ort_threads,
                memory_mb=settings.probe_memory_mb,
                timeout_s=settings.probe_timeout_s,
                run_timeout_s=settings.upload_run_timeout_s,
                model_memory_mb=settings.upload_model_memory_mb,
                energy=EnergySettings.of(settings),
            ),
        )
    return version_read(session, name, version)


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasRead,
    dependencies=[WriteAccess],
)
def set_alias(session: SessionDep, name: ModelName, alias: AliasName, body: AliasSet) -> AliasRead:
    """Point an alias (e.g. ``production``) at a live version, or at several by weight
    (sticky by the ``x-kiln-route-key`` header), with an optional shadow; takes effect at
    once, and the alias's history keeps the weights."""
    policy = traffic.set_traffic(
        session,
        name=name,
        alias=alias,
        version=body.version,
        split=body.split(),
        shadow=body.shadow,
    )
    return AliasRead.of(name, alias, policy)


@router.post(
    "/{name}/aliases/{alias}/promote",
    response_model=PromotionRead,
    dependencies=[WriteAccess],
)
def promote(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    name: ModelName,
    alias: AliasName,
    body: PromoteRequest,
) -> PromotionRead:
    """Give a canary (or the shadow) all of the alias's traffic when its gate passes: a
    labelled test, shadow agreement, or by hand. A gate that fails changes nothing and the
    answer says why (``promoted`` false), with the evidence."""
    directory = gateway_of(request.app).directory
    outcome = promotion.promote(
        session,
        store,
        lambda version: directory.target(name, version).model,
        name=name,
        alias=alias,
        candidate=body.version,
        gate=body.gate,
        dataset_id=body.dataset_id,
        rules=promotion.GateRules(body.alpha, body.min_agreement, body.min_rows),
        max_rows=settings.promote_max_rows,
    )
    policy = traffic.alias_policy(session, service.get_model(session, name), alias)
    if policy is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    return PromotionRead(
        promoted=outcome.promoted,
        gate=body.gate,
        reason=outcome.reason,
        evidence=outcome.evidence,
        alias=AliasRead.of(name, alias, policy),
    )


@router.get("/{name}/aliases/{alias}", response_model=AliasRead, dependencies=[ReadAccess])
def get_alias(session: SessionDep, name: ModelName, alias: AliasName) -> AliasRead:
    """What an alias holds now: one version, or a split, and its shadow."""
    policy = traffic.alias_policy(session, service.get_model(session, name), alias)
    if policy is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    return AliasRead.of(name, alias, policy)


@router.delete("/{name}/aliases/{alias}", status_code=204, dependencies=[WriteAccess])
def delete_alias(session: SessionDep, name: ModelName, alias: AliasName) -> Response:
    """Remove an alias (its history is kept)."""
    aliases.delete_alias(session, name=name, alias=alias)
    return Response(status_code=204)


@router.get(
    "/{name}/aliases/{alias}/history",
    response_model=list[AliasHistoryEntry],
    dependencies=[ReadAccess],
)
def alias_history(
    session: SessionDep, name: ModelName, alias: AliasName
) -> list[AliasHistoryEntry]:
    """Which version held the alias from when to when, newest first."""
    return [
        AliasHistoryEntry(**entry)
        for entry in aliases.alias_history(session, name=name, alias=alias)
    ]


@router.delete(
    "/{name}/versions/{version}",
    response_model=VersionRead,
    dependencies=[WriteAccess],
)
def archive_version(session: SessionDep, name: ModelName, version: IdPath) -> VersionRead:
    """Archive a version: it stops serving (409 while an alias points at it)."""
    return version_read(session, name, aliases.archive_version(session, name=name, version=version))


@router.delete(
    "/{name}/versions/{version}/artifact",
    response_model=VersionRead,
    dependencies=[WriteAccess],
)
def delete_artifact(
    session: SessionDep, store: StoreDep, name: ModelName, version: IdPath
) -> VersionRead:
    """Delete an archived version's ONNX file and torch weights (409 for a live version:
    archive it first). Its record (metrics, lineage) stays, with ``artifact_deleted_at``."""
    return version_read(session, name, delete_version_artifact(session, store, name, version))


@router.patch("/{name}", response_model=ModelRead, dependencies=[WriteAccess])
def tag_model(session: SessionDep, name: ModelName, body: TagsPatch) -> ModelRead:
    """Set or delete tags on a model."""
    model = service.get_model(session, name)
    model.tags = aliases.merge_tags(model.tags or {}, body.tags)
    session.flush()
    return model_read(session, model)


@router.patch("/{name}/versions/{version}", response_model=VersionRead, dependencies=[WriteAccess])
def tag_version(
    session: SessionDep, name: ModelName, version: IdPath, body: TagsPatch
) -> VersionRead:
    """Set or delete tags on a version."""
    row = service.get_version(session, name, version)
    row.tags = aliases.merge_tags(row.tags or {}, body.tags)
    session.flush()
    return version_read(session, name, row)


@router.put("/{name}/serving", response_model=ModelRead, dependencies=[WriteAccess])
def set_serving_options(session: SessionDep, name: ModelName, body: ServingOptions) -> ModelRead:
    """Serving options for every version of the model: dynamic batching
    (``max_batch_size`` null turns it off), the request-log share and the drift threshold
    (null: the server's). Takes effect on the next request."""
    model = service.get_model(session, name)
    options = body.model_dump(exclude_none=True)
    model.serving = options if set(options) - {"max_queue_delay_ms"} else None
    session.flush()
    return model_read(session, model)

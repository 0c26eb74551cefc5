"""Registry rules: registering versions, reading them, and choosing which one serves."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from app.contracts.enums import VersionStatus
from app.contracts.signature import Signature, VersionConfig
from app.core.db import Session, utcnow
from app.core.errors import NotFound
from app.core.names import MODEL_NAME, shown
from app.explain.data import inherited
from app.registry.repository import AliasRepository, ModelRepository, VersionRepository
from app.storage import StoredArtifact
from app.tables import Model, ModelVersion

PRODUCTION_ALIAS = "production"
# What serves a request that names no version when a model has no ``production`` alias
# (its alias deleted, or a database from before every first version took it): the newest
# live version a search or an upload registered; never a compression variant on its own.
# The model's next registration pins the alias on it (``register_version``).
UNPROMOTED_SOURCES = ("search", "upload")


@dataclass(frozen=True)
class VersionDraft:
    """Everything measured and known about an artifact before it becomes a version."""

    task: str
    source: str
    artifact: StoredArtifact
    signature: Signature
    metrics: dict[str, Any] = field(default_factory=dict)
    n_params: int | None = None
    latency_p50_ms: float | None = None
    class_labels: list[Any] | None = None
    config: VersionConfig | None = None
    dataset_id: int | None = None
    job_id: int | None = None
    trial_id: int | None = None
    parent_version_id: int | None = None
    method: str | None = None


def register_version(session: Session, model_name: str, draft: VersionDraft) -> ModelVersion:
    """Record ``draft`` as the next version of ``model_name`` (created if new). Every
    model is created here, so the name rule holds whichever route or job registers it.

    Registering never changes what answers a request that names no version: a model's
    first version takes the ``production`` alias, and a later one leaves it where it is.
    A model without the alias (made before this rule, or its alias deleted) gets it here,
    on the version that served until now."""
    MODEL_NAME.check(model_name, "model name")
    model = ModelRepository(session).get_or_create(model_name, draft.task)
    number = ModelRepository(session).next_version(model.id)
    if draft.parent_version_id is not None:  # a variant explains itself on its parent's rows
        parent = VersionRepository(session).by_id(draft.parent_version_id)
        if parent is not None:
            draft = replace(draft, metrics=inherited(draft.metrics, parent.metrics, parent.id))
    version = _add_version(session, model, number, draft)
    if VersionRepository(session).alias_target(model.id, PRODUCTION_ALIAS) is None:
        served = default_serving_version(session, model, excluding=number)
        _take_production(session, model, served or version)
    return version


def _take_production(session: Session, model: Model, version: ModelVersion) -> None:
    """Point a model's missing ``production`` alias at ``version``, with its history entry.
    When a registration beside this one set it first, what it chose serves."""
    AliasRepository(session).point(
        model.id, PRODUCTION_ALIAS, None, version_id=version.id, now=utcnow()
    )


def _add_version(session: Session, model: Model, number: int, draft: VersionDraft) -> ModelVersion:
    return VersionRepository(session).add(
        ModelVersion(
            model_id=model.id,
            version=number,
            status=VersionStatus.LIVE,
            source=draft.source,
            task=draft.task,
            artifact_key=draft.artifact.key,
            sha256=draft.artifact.sha256,
            size_bytes=draft.artifact.size_bytes,
            n_params=draft.n_params,
            latency_p50_ms=draft.latency_p50_ms,
            metrics=draft.metrics,
            signature=draft.signature,
            class_labels=draft.class_labels,
            config=draft.config,
            dataset_id=draft.dataset_id,
            tags={},
            job_id=draft.job_id,
            trial_id=draft.trial_id,
            parent_version_id=draft.parent_version_id,
            method=draft.method,
        )
    )


def get_model(session: Session, name: str) -> Model:
    """The model, or NotFound."""
    model = ModelRepository(session).get_by_name(name) if MODEL_NAME.is_valid(name) else None
    if model is None:
        raise NotFound(f"model {shown(name)} not found")
    return model


def list_models(session: Session, *, limit: int, offset: int) -> tuple[list[Model], int]:
    """A page of models by name."""
    return ModelRepository(session).by_name(limit=limit, offset=offset)


def list_versions(
    session: Session, name: str, *, limit: int, offset: int
) -> tuple[list[ModelVersion], int]:
    """A page of a model's versions, newest first."""
    return VersionRepository(session).page(get_model(session, name).id, limit=limit, offset=offset)


def get_version(session: Session, name: str, number: int) -> ModelVersion:
    """One version of a model, or NotFound."""
    version = VersionRepository(session).get(get_model(session, name).id, number)
    if version is None:
        raise NotFound(f"model {name!r} has no version {number}")
    return version


def kept_artifact(version: ModelVersion, name: str) -> ModelVersion:
    """The version, or NotFound when its ONNX file was deleted."""
    if version.artifact_deleted_at is not None:
        raise NotFound(f"the ONNX file of {name} v{version.version} was deleted")
    return version


def model_aliases(session: Session, model: Model) -> dict[str, int]:
    """Alias name -> version number for a model."""
    return VersionRepository(session).aliases_of(model.id)


def default_serving_version(
    session: Session, model: Model, *, excluding: int | None = None
) -> ModelVersion | None:
    """What serves ``model`` when a request names no version: the ``production`` alias,
    else the newest live version a search or an upload registered, else (a model made only
    of compression variants) its newest live version. ``excluding``: a version number to
    pass over (what served before that version was registered)."""
    versions = VersionRepository(session)
    return (
        versions.alias_target(model.id, PRODUCTION_ALIAS)
        or versions.latest_live(model.id, sources=UNPROMOTED_SOURCES, excluding=excluding)
        or versions.latest_live(model.id, excluding=excluding)
    )


def resolve_serving_version(session: Session, name: str, number: int | None) -> ModelVersion:
    """The version a request should use: the one asked for, else what serves by default
    (``default_serving_version``)."""
    model = get_model(session, name)
    versions = VersionRepository(session)
    if number is not None:
        version = versions.get(model.id, number)
        if version is None:
            raise NotFound(f"model {name!r} has no version {number}")
    else:
        version = default_serving_version(session, model)
        if version is None:
            raise NotFound(f"model {name!r} has no live version")
    if version.status != VersionStatus.LIVE:
        raise NotFound(
            f"model {name!r} version {version.version} is {version.status} and no longer serves"
        )
    return version


MAX_LINEAGE = 64  # parents followed when looking for the upload a graph came from


def uploaded_origin(session: Session, version: ModelVersion) -> ModelVersion | None:
    """The upload whose graph this version serves: the version itself if it was uploaded,
    or, for a graph rewrite of one (quantized, say), the upload it was rewritten from. None
    for a graph ModelKiln exported from a torch network (a search's, or a compression that
    kept one), whatever its lineage."""
    current: ModelVersion | None = version
    for _ in range(MAX_LINEAGE):
        if current is None:
            return None
        if current.source == "upload":
            return current
        exported = current.config is not None and current.config.architecture is not None
        if current.source != "compression" or exported:
            return None
        parent = current.parent_version_id
        current = VersionRepository(session).by_id(parent) if parent is not None else None
    return None


def sandbox_reason(session: Session, version: ModelVersion) -> str | None:
    """Why this version's graph runs only in a sandbox (an upload not classified bounded,
    or a rewrite of one), or None. A job may not run such a graph in a worker process:
    compression, distillation and fine-tuning refuse it with this reason."""
    origin = uploaded_origin(session, version)
    if origin is None:
        return None
    config = origin.config
    if config is not None and config.graph_class == "bounded":
        return None
    if config is not None and config.graph_class_reason:
        return config.graph_class_reason
    return "it was uploaded before graphs were classified (upload it again to classify it)"


def isolation(session: Session, version: ModelVersion) -> tuple[str, str]:
    """Where the version's graph runs ('gateway' or 'sandbox') and why."""
    reason = sandbox_reason(session, version)
    if reason is not None:
        return "sandbox", reason
    origin = uploaded_origin(session, version)
    if origin is None:
        return "gateway", "made by ModelKiln's own exporter"
    return "gateway", (origin.config.graph_class_reason if origin.config else None) or "bounded"


def lineage(session: Session, version: ModelVersion) -> dict[str, Any]:
    """Where a version came from: dataset, job, trial number, parent version and method."""
    versions = VersionRepository(session)
    parent = versions.by_id(version.parent_version_id) if version.parent_version_id else None
    parent_model = ModelRepository(session).get(parent.model_id) if parent else None
    return {
        "dataset_id": version.dataset_id,
        "job_id": version.job_id,
        "trial": versions.trial_number(version),
        "parent": (
            {"model": parent_model.name, "version": parent.version}
            if parent and parent_model
            else None
        ),
        "method": version.method,
    }

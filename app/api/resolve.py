"""Resolving a request's model name and version to a loaded, warmed-up session."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.registry.service import resolve_serving_version
from app.serving.runtime import LoadedModel, SessionCache
from app.tables import ModelVersion


def load_for_request(session: Session, cache: SessionCache, name: str,
                     version: int | None) -> tuple[ModelVersion, LoadedModel]:
    """The version a request addresses (alias rules apply) and its loaded session."""
    row = resolve_serving_version(session, name, version)
    model = cache.get(version_id=row.id, artifact_key=row.artifact_key, sha256=row.sha256,
                      signature=row.signature, task=row.task, labels=row.class_labels)
    return row, model

"""Aliases with history, archiving, and tags: the rules that move what serves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.contracts.enums import VersionStatus
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.names import TAG_KEY
from app.registry.service import get_model, get_version
from app.registry.traffic import close_history, holders, set_traffic
from app.tables import Alias, AliasHistory, ModelVersion

MAX_TAGS = 50
MAX_TAG_VALUE = 256


def set_alias(session: Session, *, name: str, alias: str, version: int) -> ModelVersion:
    """Point ``alias`` at one live version of ``name`` (no split, no shadow), closing the
    previous history entry. The next request that resolves the alias gets the new version."""
    set_traffic(session, name=name, alias=alias, version=version)
    return get_version(session, name, version)


def delete_alias(session: Session, *, name: str, alias: str) -> None:
    """Remove an alias; its history keeps when it ended."""
    model = get_model(session, name)
    row = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    close_history(session, model.id, alias, utcnow())
    session.delete(row)
    session.flush()


def alias_history(session: Session, *, name: str, alias: str) -> list[dict[str, Any]]:
    """Which version held ``alias`` from when to when, newest first."""
    model = get_model(session, name)
    rows = session.execute(
        select(AliasHistory, ModelVersion.version)
        .join(ModelVersion, AliasHistory.version_id == ModelVersion.id)
        .where(AliasHistory.model_id == model.id, AliasHistory.alias == alias)
        .order_by(AliasHistory.assigned_at.desc(), AliasHistory.id.desc())
    ).tuples()
    numbers = {
        key: number
        for key, number in session.execute(
            select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == model.id)
        ).tuples()
    }
    history = [
        {
            "version": number,
            "versions": entry.split.arms if entry.split is not None else None,
            "shadow": numbers.get(entry.shadow_version_id) if entry.shadow_version_id else None,
            "assigned_at": entry.assigned_at,
            "removed_at": entry.removed_at,
        }
        for entry, number in rows
    ]
    if not history:
        raise NotFound(f"model {name!r} has never had an alias {alias!r}")
    return history


def archive_version(session: Session, *, name: str, version: int) -> ModelVersion:
    """Archive a version so it stops serving; 409 while an alias points at it."""
    target = get_version(session, name, version)
    held = holders(session, get_model(session, name), target)
    if held:
        raise Conflict(
            f"model {name!r} version {version} is held (or given a weight, or shadowed) by "
            f"alias(es) {held}; move or delete them first"
        )
    target.status = VersionStatus.ARCHIVED
    session.flush()
    return target


def merge_tags(current: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """Apply tag changes (a null value deletes the key), validating keys, values and count."""
    merged = dict(current)
    for key, value in changes.items():
        TAG_KEY.check(key, "tags")
        if value is None:
            merged.pop(key, None)
        elif len(value) > MAX_TAG_VALUE:
            raise InvalidInput(f"tags.{key}: value longer than {MAX_TAG_VALUE} characters")
        else:
            merged[key] = value
    if len(merged) > MAX_TAGS:
        raise InvalidInput(f"tags: at most {MAX_TAGS} tags, got {len(merged)}")
    return merged

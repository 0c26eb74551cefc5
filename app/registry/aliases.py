"""Aliases with history, archiving, and tags: the rules that move what serves."""

from __future__ import annotations

from typing import Any

from app.core.db import Session, utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.names import TAG_KEY
from app.registry.repository import AliasRepository, VersionRepository
from app.registry.service import get_model, get_version
from app.registry.traffic import holders, set_traffic
from app.tables import ModelVersion

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
    aliases = AliasRepository(session)
    row = aliases.find(model.id, alias)
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    aliases.close_history(model.id, alias, utcnow())
    aliases.remove(row)


def alias_history(session: Session, *, name: str, alias: str) -> list[dict[str, Any]]:
    """Which version held ``alias`` from when to when, newest first."""
    model = get_model(session, name)
    entries = AliasRepository(session).history(model.id, alias)
    numbers = VersionRepository(session).numbers_by_id(model.id)
    history = [
        {
            "version": number,
            "versions": entry.split.arms if entry.split is not None else None,
            "shadow": numbers.get(entry.shadow_version_id) if entry.shadow_version_id else None,
            "assigned_at": entry.assigned_at,
            "removed_at": entry.removed_at,
        }
        for entry, number in entries
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
    return VersionRepository(session).archive(target)


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

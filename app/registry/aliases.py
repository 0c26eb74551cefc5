"""Aliases with history, archiving, and tags: the rules that move what serves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts.enums import VersionStatus
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.names import ALIAS, TAG_KEY
from app.registry.service import get_model, get_version
from app.tables import Alias, AliasHistory, ModelVersion

MAX_TAGS = 50
MAX_TAG_VALUE = 256


def set_alias(session: Session, *, name: str, alias: str, version: int) -> ModelVersion:
    """Point ``alias`` at a live version of ``name``, closing the previous history entry.
    The next request that resolves the alias gets the new version."""
    ALIAS.check(alias, "alias")
    model = get_model(session, name)
    target = get_version(session, name, version)
    if target.status != VersionStatus.LIVE:
        raise Conflict(
            f"model {name!r} version {version} is {target.status}; "
            "only live versions can hold an alias"
        )
    now = utcnow()
    row = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    if row is not None and row.version_id == target.id:
        return target
    _close_history(session, model.id, alias, now)
    try:
        with session.begin_nested():
            if row is None:
                session.add(
                    Alias(model_id=model.id, name=alias, version_id=target.id, updated_at=now)
                )
            else:
                row.version_id = target.id
                row.updated_at = now
            session.add(
                AliasHistory(model_id=model.id, alias=alias, version_id=target.id, assigned_at=now)
            )
    except IntegrityError:
        raise Conflict(f"alias {alias!r} was changed at the same time; try again") from None
    return target


def _close_history(session: Session, model_id: int, alias: str, now: Any) -> None:
    session.execute(
        update(AliasHistory)
        .where(
            AliasHistory.model_id == model_id,
            AliasHistory.alias == alias,
            AliasHistory.removed_at.is_(None),
        )
        .values(removed_at=now)
        .execution_options(synchronize_session=False)
    )


def delete_alias(session: Session, *, name: str, alias: str) -> None:
    """Remove an alias; its history keeps when it ended."""
    model = get_model(session, name)
    row = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    _close_history(session, model.id, alias, utcnow())
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
    history = [
        {"version": number, "assigned_at": entry.assigned_at, "removed_at": entry.removed_at}
        for entry, number in rows
    ]
    if not history:
        raise NotFound(f"model {name!r} has never had an alias {alias!r}")
    return history


def archive_version(session: Session, *, name: str, version: int) -> ModelVersion:
    """Archive a version so it stops serving; 409 while an alias points at it."""
    target = get_version(session, name, version)
    held = list(session.scalars(select(Alias.name).where(Alias.version_id == target.id)))
    if held:
        raise Conflict(
            f"model {name!r} version {version} is held by alias(es) {sorted(held)}; "
            "move or delete them first"
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

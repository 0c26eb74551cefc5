"""Loading models ahead of the first request (``KILN_PRELOAD_MODELS``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.core.db import session_scope
from app.core.errors import KilnError
from app.registry.repository import ModelRepository
from app.serving.directory import ServingDirectory

logger = logging.getLogger(__name__)


@dataclass
class Preload:
    """Progress of the start-up load; the server reports ready once it is ``done``."""

    names: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    done: bool = False


def requested_names(setting: str, database_url: str) -> list[str]:
    """The model names a ``preload_models`` setting asks for (``*``: every model)."""
    names = [name.strip() for name in setting.split(",") if name.strip()]
    if names != ["*"]:
        return names
    with session_scope(database_url) as session:
        return ModelRepository(session).names()


def preload(directory: ServingDirectory, setting: str, progress: Preload) -> None:
    """Load and warm up the serving version of each requested model (blocking).

    A model that cannot load (missing, archived, digest mismatch) is logged and skipped:
    it would fail the same way on first use, and the others should still serve."""
    try:
        progress.names = requested_names(setting, directory.database_url)
        for name in progress.names:
            try:
                target = directory.target(name, None)
            except KilnError as error:
                progress.failed[name] = error.message
                logger.warning("preload of model %r failed: %s", name, error.message)
                continue
            progress.loaded.append(name)
            logger.info("preloaded model %r version %s", name, target.version)
    finally:
        progress.done = True

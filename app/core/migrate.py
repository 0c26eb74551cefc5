"""Run Alembic migrations from code (``kiln migrate``, ``kiln serve``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = database_url
    config.attributes["quiet"] = True
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the registry schema up to date (idempotent)."""
    command.upgrade(alembic_config(database_url), "head")

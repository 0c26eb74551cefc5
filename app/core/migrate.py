"""Run Alembic migrations from code (``kiln migrate``, ``kiln serve``, tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

# The Alembic scripts are the top-level ``migrations`` package (installed beside ``app``, its
# templates as package data). It sits above every layer (its env.py imports the tables and
# the engine), so it is found by name, never imported: find_spec locates a top-level package
# without running it.
MIGRATIONS_PACKAGE = "migrations"


def migrations_dir() -> Path:
    """The directory of the Alembic scripts, in a source checkout or an installed copy."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeError(
            f"the {MIGRATIONS_PACKAGE!r} package (the Alembic scripts) is not installed "
            "beside app: reinstall ModelKiln"
        )
    return Path(next(iter(locations)))


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = database_url
    config.attributes["quiet"] = True
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the registry schema up to date (idempotent)."""
    command.upgrade(alembic_config(database_url), "head")

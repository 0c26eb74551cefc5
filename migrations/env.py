"""Alembic environment: the URL comes from the caller or from KILN_DATABASE_URL."""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context

import app.tables  # noqa: F401  (registers every table on Base.metadata)
from app.core.config import get_settings
from app.core.db import Base, get_engine

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Compare only our own tables: Optuna or kombu may keep theirs in the same database."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def run() -> None:
    url = config.attributes.get("url") or get_settings().database_url
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()

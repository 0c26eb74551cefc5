"""The migrations are the schema: upgrading to head leaves nothing for autogenerate to add."""

from __future__ import annotations

from alembic import command

from app.core.migrate import alembic_config, upgrade_to_head


def test_head_matches_the_tables(database_url: str) -> None:
    upgrade_to_head(database_url)  # idempotent on a database already at head
    command.check(alembic_config(database_url))  # raises if the tables drifted

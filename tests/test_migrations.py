"""The migrations are the schema: upgrading to head leaves nothing for autogenerate to add."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command

from app.core.migrate import alembic_config, upgrade_to_head


def test_head_matches_the_tables(database_url: str) -> None:
    upgrade_to_head(database_url)  # idempotent on a database already at head
    command.check(alembic_config(database_url))  # raises if the tables drifted


def test_scripts_are_found_without_importing_the_package() -> None:
    """app sits below the migrations (their env.py imports the tables): migrate finds the
    scripts' directory by name and never runs the package itself."""
    script = (
        "import sys; from app.core.migrate import migrations_dir; "
        "path = migrations_dir(); "
        "assert (path / 'env.py').is_file() and (path / 'versions').is_dir(), path; "
        "assert 'migrations' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1])

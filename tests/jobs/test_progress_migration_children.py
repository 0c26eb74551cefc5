"""Migration 0016 on SQLite, on a database made at 0015 that holds a job with trials and a
version it registered, as every real one does. The columns are renamed in place: batch
mode's default (copy ``jobs``, drop the original) with ``PRAGMA foreign_keys=ON`` (app.core.db
sets it on every connection, env.py uses that engine) deleted the trials (ON DELETE CASCADE)
or was refused (model_versions.job_id)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from app.core.migrate import alembic_config

NOW = "2026-12-01 10:00:00"


def _seed(url: str, *, with_version: bool) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        run = connection.execute
        run(
            sa.text(
                "INSERT INTO jobs (id, kind, status, spec, attempt, max_attempts, trials_done, "
                "trials_total, sends, created_at, updated_at, trial_slots) VALUES "
                "(1, 'search', 'running', '{}', 1, 3, 2, 8, 1, :n, :n, 0)"
            ),
            {"n": NOW},
        )
        for number in range(2):
            run(
                sa.text(
                    "INSERT INTO trials (job_id, number, attempt, state, params, intermediate, "
                    "started_at) VALUES (1, :k, 1, 'complete', '{}', '[]', :n)"
                ),
                {"k": number, "n": NOW},
            )
        if with_version:
            run(
                sa.text(
                    "INSERT INTO models (id, name, task, latest_version, created_at, "
                    "updated_at, tags) VALUES (1, 'm', 'classification', 1, :n, :n, '{}')"
                ),
                {"n": NOW},
            )
            run(
                sa.text(
                    "INSERT INTO model_versions (model_id, version, status, source, task, "
                    "artifact_key, sha256, size_bytes, metrics, signature, created_at, tags, "
                    "job_id) VALUES (1, 1, 'live', 'search', 'classification', 'k', '0', 1, "
                    "'{}', '{}', :n, '{}', 1)"
                ),
                {"n": NOW},
            )
    engine.dispose()


def test_upgrade_keeps_a_jobs_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    command.upgrade(alembic_config(url), "0015")
    _seed(url, with_version=False)
    command.upgrade(alembic_config(url), "0016")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 2
    engine.dispose()


def test_upgrade_of_a_database_with_a_registered_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    command.upgrade(alembic_config(url), "0015")
    _seed(url, with_version=True)
    command.upgrade(alembic_config(url), "head")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT progress_done FROM jobs")).scalar() == 2
        assert connection.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 2
    engine.dispose()
    command.downgrade(alembic_config(url), "0015")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 2
    engine.dispose()

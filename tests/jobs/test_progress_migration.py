"""Migration 0016: a job's counts move from trials_done / trials_total to progress_done /
progress_total with their values, and back on a downgrade (SQLite's batch copy included)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from app.core.migrate import alembic_config

JOB = {
    "kind": "predict",
    "status": "running",
    "spec": "{}",
    "attempt": 1,
    "max_attempts": 3,
    "trial_slots": 0,
    "sends": 1,
    "created_at": "2026-12-01 10:00:00",
    "updated_at": "2026-12-01 10:00:00",
}


def _columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("jobs")}


def test_the_counts_move_to_progress_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0015")
    engine = sa.create_engine(url)
    jobs = sa.table("jobs", *(sa.column(name) for name in [*JOB, "trials_done", "trials_total"]))
    with engine.begin() as connection:
        connection.execute(sa.insert(jobs).values(**JOB, trials_done=700, trials_total=1000))

    command.upgrade(config, "0016")
    assert {"progress_done", "progress_total"} <= _columns(engine)
    assert not {"trials_done", "trials_total"} & _columns(engine)
    with engine.connect() as connection:
        counts = connection.execute(sa.text("SELECT progress_done, progress_total FROM jobs"))
        assert counts.one() == (700, 1000)

    command.downgrade(config, "0015")
    assert {"trials_done", "trials_total"} <= _columns(engine)
    with engine.connect() as connection:
        counts = connection.execute(sa.text("SELECT trials_done, trials_total FROM jobs"))
        assert counts.one() == (700, 1000)
    engine.dispose()

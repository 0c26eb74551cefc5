"""Each gateway process's open drift window, in the registry: one row per version and
process, rewritten in place; a process that stopped takes its rows with it, and one that
has not written for ``STALE_S`` (killed) is left out and later deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.registry import drift_progress
from app.tables import DriftProgressRow
from tests.conftest import register


def write(settings: Settings, gateway: str, rows: int, version: int = 1) -> None:
    with session_scope(settings.database_url) as session:
        drift_progress.set_progress(
            session, "flowers", version, gateway, rows=rows, window_rows=2000, sample=0.1
        )


def shown(settings: Settings) -> list[tuple[int, str, int, int | None]]:
    with session_scope(settings.database_url) as session:
        return [
            (p.version, p.gateway, p.rows, p.rows_to_window)
            for p in drift_progress.progress(session, "flowers")
        ]


def test_each_process_keeps_one_row_per_version(settings: Settings, classifier_onnx: Path) -> None:
    for _ in range(2):
        register(settings, classifier_onnx, labels=["a", "b", "c"])
    write(settings, "host-1", 100)
    write(settings, "host-1", 131)  # rewritten, not added
    write(settings, "host-2", 40)
    write(settings, "host-2", 7, version=2)
    write(settings, "host-1", 5, version=99)  # no such version: nothing recorded
    # (2,000 - 131) / 0.1 more predicted rows before host-1's window is full
    assert shown(settings) == [
        (1, "host-1", 131, 18_690),
        (1, "host-2", 40, 19_600),
        (2, "host-2", 7, 19_930),
    ]
    with session_scope(settings.database_url) as session:
        drift_progress.forget_gateway(session, "host-2")
    assert shown(settings) == [(1, "host-1", 131, 18_690)]


def test_a_process_gone_silent_is_left_out_then_deleted(
    settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    write(settings, "killed", 900)
    write(settings, "alive", 10)
    long_ago = utcnow() - timedelta(seconds=drift_progress.STALE_S + 1)
    with session_scope(settings.database_url) as session:
        session.execute(
            update(DriftProgressRow)
            .where(DriftProgressRow.gateway == "killed")
            .values(updated_at=long_ago)
        )
    assert shown(settings) == [(1, "alive", 10, 19_900)]
    with session_scope(settings.database_url) as session:
        drift_progress.forget_gateway(session, "another")  # a stop sweeps the stale rows
        assert session.query(DriftProgressRow).count() == 1

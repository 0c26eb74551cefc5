"""How far each gateway process's open drift window has got, per version, in the registry:
a window lives in one process's memory, so only the gateways know how many rows it holds.
Each writes its own rows (one per version, keyed by the process) when they change, at
least every ``REFRESH_S`` while it holds an open window, and deletes them when it stops;
readers leave out rows older than ``STALE_S`` (a process that was killed). Also the drift
windows of one version in time order, for the model page's chart."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from app.contracts.traffic import DriftProgress
from app.core.db import Session, utcnow
from app.registry.monitoring import KEPT_WINDOWS
from app.registry.repository import (
    DriftProgressRepository,
    DriftWindowRepository,
    VersionRepository,
)
from app.registry.service import get_model

REFRESH_S = 60.0  # a gateway rewrites its rows at least this often while a window is open
STALE_S = 3 * REFRESH_S  # rows not rewritten for this long belong to a process that is gone


def set_progress(
    session: Session,
    name: str,
    version: int,
    gateway: str,
    *,
    rows: int,
    window_rows: int,
    sample: float,
) -> None:
    """Record that ``gateway``'s open window of ``version`` holds ``rows`` sampled rows."""
    model = get_model(session, name)
    ids = VersionRepository(session).ids_by_number(model.id, [version])
    if version not in ids:
        return
    DriftProgressRepository(session).record(
        model.id,
        ids[version],
        gateway,
        rows=rows,
        window_rows=window_rows,
        sample=sample,
        now=utcnow(),
    )


def forget_gateway(session: Session, gateway: str) -> None:
    """A gateway that stops takes its rows with it (its open windows are gone), and the
    rows of processes gone long ago with them."""
    stale = utcnow() - timedelta(seconds=STALE_S)
    DriftProgressRepository(session).forget(gateway, stale_before=stale)


def _rows_to_window(rows: int, window_rows: int, sample: float) -> int | None:
    if sample <= 0:
        return None
    return math.ceil(round(max(window_rows - rows, 0) / sample, 6))  # 1869 / 0.1 is 18690.000…04


def progress(session: Session, name: str) -> list[DriftProgress]:
    """Each live gateway process's open window of each version of the model, by version."""
    model = get_model(session, name)
    stale = utcnow() - timedelta(seconds=STALE_S)
    found = DriftProgressRepository(session).live(model.id, since=stale)
    return [
        DriftProgress(
            model=name,
            version=number,
            gateway=row.gateway,
            rows=row.rows,
            window_rows=row.window_rows,
            sample=row.sample,
            rows_to_window=_rows_to_window(row.rows, row.window_rows, row.sample),
            updated_at=row.updated_at,
        )
        for row, number in found
    ]


def version_windows(
    session: Session, name: str, version: int, limit: int = KEPT_WINDOWS
) -> list[dict[str, Any]]:
    """The stored reports of ``version``'s newest ``limit`` windows, oldest first (as
    stored: the chart reads a few fields of many windows)."""
    model = get_model(session, name)
    ids = VersionRepository(session).ids_by_number(model.id, [version])
    if version not in ids:
        return []
    return DriftWindowRepository(session).reports_of(model.id, ids[version], limit)

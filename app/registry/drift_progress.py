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

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.contracts.traffic import DriftProgress
from app.core.db import utcnow
from app.registry.monitoring import KEPT_WINDOWS, version_ids
from app.registry.service import get_model
from app.tables import DriftProgressRow, DriftWindow, ModelVersion

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
    ids = version_ids(session, model, [version])
    if version not in ids:
        return
    row = session.scalar(
        select(DriftProgressRow).where(
            DriftProgressRow.version_id == ids[version], DriftProgressRow.gateway == gateway
        )
    )
    if row is None:
        row = DriftProgressRow(model_id=model.id, version_id=ids[version], gateway=gateway)
        session.add(row)
    row.rows = rows
    row.window_rows = window_rows
    row.sample = sample
    row.updated_at = utcnow()
    session.flush()


def forget_gateway(session: Session, gateway: str) -> None:
    """A gateway that stops takes its rows with it (its open windows are gone), and the
    rows of processes gone long ago with them."""
    stale = utcnow() - timedelta(seconds=STALE_S)
    session.execute(
        delete(DriftProgressRow).where(
            (DriftProgressRow.gateway == gateway) | (DriftProgressRow.updated_at < stale)
        )
    )


def _rows_to_window(rows: int, window_rows: int, sample: float) -> int | None:
    if sample <= 0:
        return None
    return math.ceil(round(max(window_rows - rows, 0) / sample, 6))  # 1869 / 0.1 is 18690.000…04


def progress(session: Session, name: str) -> list[DriftProgress]:
    """Each live gateway process's open window of each version of the model, by version."""
    model = get_model(session, name)
    stale = utcnow() - timedelta(seconds=STALE_S)
    found = session.execute(
        select(DriftProgressRow, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == DriftProgressRow.version_id)
        .where(DriftProgressRow.model_id == model.id, DriftProgressRow.updated_at >= stale)
        .order_by(ModelVersion.version, DriftProgressRow.gateway)
    ).tuples()
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
    ids = version_ids(session, model, [version])
    if version not in ids:
        return []
    reports = session.scalars(
        select(DriftWindow.report)
        .where(DriftWindow.model_id == model.id, DriftWindow.version_id == ids[version])
        .order_by(DriftWindow.id.desc())
        .limit(limit)
    )
    return list(reversed(list(reports)))

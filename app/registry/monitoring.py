"""What serving records about a model, in the registry: running totals of shadow
comparisons (gateways add to them; never overwrite), the request-log parts in the artifact
store, drift windows and events. The gateway's monitors write here off the request path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.contracts.encoding import TableEncoding
from app.contracts.profile import ColumnProfile
from app.contracts.traffic import AliasPolicy, DriftReport, ModelEvent, ShadowStats
from app.core.db import Session
from app.registry.repository import (
    DriftWindowRepository,
    ModelEventRepository,
    RequestLogRepository,
    ShadowComparisonRepository,
    VersionRepository,
)
from app.registry.service import get_model
from app.tables import DriftWindow, ModelEventRow, RequestLogPart


def add_shadow_tally(
    session: Session, name: str, primary: int, shadow: int, tally: dict[str, float]
) -> None:
    """Add one gateway's counts since its last flush to the running totals."""
    model = get_model(session, name)
    ids = VersionRepository(session).ids_by_number(model.id, [primary, shadow])
    if primary not in ids or shadow not in ids:
        return
    ShadowComparisonRepository(session).add_tally(model.id, ids[primary], ids[shadow], tally)


def shadowed(session: Session) -> set[str]:
    """The models that have shadow comparisons."""
    return ShadowComparisonRepository(session).model_names()


def shadow_stats(session: Session, name: str) -> list[ShadowStats]:
    """Every shadow comparison of the model, newest first."""
    model = get_model(session, name)
    numbers = VersionRepository(session).numbers_by_id(model.id)
    return [
        ShadowStats(
            model=name,
            primary_version=numbers[row.primary_version_id],
            shadow_version=numbers[row.shadow_version_id],
            requests=row.requests,
            rows=row.rows,
            agreement=row.agreed / row.rows if row.rows else None,
            mean_abs_diff=row.abs_diff_sum / row.rows if row.rows else None,
            dropped=row.dropped,
            failures=row.failures,
            since=row.created_at,
            updated_at=row.updated_at,
        )
        for row in ShadowComparisonRepository(session).of_model(model.id)
    ]


def current_shadow_stats(
    session: Session, name: str, policy: AliasPolicy | None
) -> list[ShadowStats]:
    """The comparisons of ``policy``'s shadow with the versions that answer through the
    alias now (none without a shadow). A shadow promoted or replaced keeps its totals in
    ``shadow_stats`` and /metrics, and its promotion event keeps the numbers it passed on,
    but it is no longer the alias's shadow: reporting it as one misleads."""
    if policy is None or policy.shadow is None:
        return []
    answering = policy.answering
    return [
        stats
        for stats in shadow_stats(session, name)
        if stats.shadow_version == policy.shadow and stats.primary_version in answering
    ]


def add_log_part(
    session: Session,
    name: str,
    *,
    key: str,
    sha256: str,
    rows: int,
    size_bytes: int,
    raw_bytes: int,
    first_at: datetime,
    last_at: datetime,
) -> None:
    """Record a Parquet part of the model's request log: ``size_bytes`` its file,
    ``raw_bytes`` its columns uncompressed (what KILN_LOG_MAX_MB counts)."""
    model = get_model(session, name)
    RequestLogRepository(session).add(
        RequestLogPart(
            model_id=model.id,
            key=key,
            sha256=sha256,
            rows=rows,
            size_bytes=size_bytes,
            raw_bytes=raw_bytes,
            first_at=first_at,
            last_at=last_at,
        )
    )


def log_parts(session: Session, name: str) -> list[RequestLogPart]:
    """The model's request-log parts, oldest first."""
    return RequestLogRepository(session).oldest_first(get_model(session, name).id)


def log_bytes(part: RequestLogPart) -> int:
    """What a part counts against KILN_LOG_MAX_MB: its columns uncompressed (what reading
    it unpacks; repeated text compresses a thousandfold), or its file when that is larger
    (a part of a few rows is mostly Parquet footer); a part recorded before its
    uncompressed size was measured counts its file."""
    return max(part.raw_bytes or 0, part.size_bytes)


def trim_log(session: Session, name: str, max_bytes: int) -> list[str]:
    """Forget the oldest parts until the model's log holds at most ``max_bytes``
    (``log_bytes`` of each part), but never the newest: a part larger than the whole limit
    stays (the log passes it by that part) rather than leave the log empty. Returns their
    keys, for the caller to delete from the store after the commit."""
    parts = log_parts(session, name)
    total = sum(log_bytes(part) for part in parts)
    dropped = []
    for part in parts[:-1]:
        if total <= max_bytes:
            break
        total -= log_bytes(part)
        dropped.append(part)
    RequestLogRepository(session).forget(dropped)
    return [part.key for part in dropped]


def drift_reference(
    session: Session, version_id: int
) -> tuple[list[ColumnProfile], TableEncoding | None, int, list[str]] | None:
    """The training profile of a version's dataset (columns, its encoding, rows, feature
    names), or None for a version without one (an upload)."""
    row = VersionRepository(session).training_dataset(version_id)
    if row is None or row.profile is None:
        return None
    return list(row.profile.columns), row.encoding, row.n_rows, list(row.feature_names)


KEPT_WINDOWS = 1000  # drift windows kept per model (the oldest go)
KEPT_EVENTS = 1000  # events kept per model


def add_drift_window(
    session: Session, name: str, version: int, report: DriftReport, max_psi: float | None
) -> bool:
    """Store one window's report (the newest ``KEPT_WINDOWS`` of a model are kept); whether
    its drifted columns differ from the previous window's: a drift that starts or changes
    is news, the same drift again is not."""
    model = get_model(session, name)
    ids = VersionRepository(session).ids_by_number(model.id, [version])
    if version not in ids:
        return False
    windows = DriftWindowRepository(session)
    previous = windows.newest_report(model.id, ids[version])
    windows.add(
        DriftWindow(
            model_id=model.id,
            version_id=ids[version],
            rows=report.rows,
            max_psi=max_psi,
            drifted=bool(report.drifted),
            report=report.model_dump(mode="json"),
            ended_at=report.ended_at,
        )
    )
    windows.keep_newest(model.id, KEPT_WINDOWS)
    before = set(previous.drifted) if previous is not None else set()
    return set(report.drifted) != before


def latest_drift(session: Session, name: str, limit: int = 20) -> list[DriftReport]:
    """The model's most recent drift windows, newest first."""
    rows = DriftWindowRepository(session).newest(get_model(session, name).id, limit)
    return [DriftReport.model_validate(row.report) for row in rows]


def latest_drift_by_model(session: Session) -> dict[str, DriftReport]:
    """Each model's newest drift window (what ``/metrics`` shows)."""
    return DriftWindowRepository(session).newest_by_model()


def add_event(
    session: Session, name: str, kind: str, message: str, detail: dict[str, Any] | None = None
) -> None:
    """Record something serving noticed about a model (its newest ``KEPT_EVENTS`` kept)."""
    model = get_model(session, name)
    recorded = ModelEventRepository(session)
    recorded.add(ModelEventRow(model_id=model.id, kind=kind, message=message, detail=detail))
    recorded.keep_newest(model.id, KEPT_EVENTS)


def events(session: Session, name: str, limit: int = 50) -> list[ModelEvent]:
    """The model's events, newest first."""
    rows = ModelEventRepository(session).newest(get_model(session, name).id, limit)
    return [
        ModelEvent(
            id=row.id,
            model=name,
            kind=row.kind,
            message=row.message,
            detail=row.detail,
            created_at=row.created_at,
        )
        for row in rows
    ]


def event_counts(session: Session) -> dict[tuple[str, str], int]:
    """(model, kind) -> events recorded."""
    return ModelEventRepository(session).counts()

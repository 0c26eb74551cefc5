"""What serving records about a model, in the registry: running totals of shadow
comparisons (gateways add to them; never overwrite), the request-log parts in the artifact
store, drift windows and events. The gateway's monitors write here off the request path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts.profile import ColumnProfile
from app.contracts.traffic import AliasPolicy, DriftReport, ModelEvent, ShadowStats
from app.core.db import rows_changed, utcnow
from app.registry.service import get_model
from app.tables import (
    Dataset,
    DriftWindow,
    Model,
    ModelEventRow,
    ModelVersion,
    RequestLogPart,
    ShadowComparison,
)

TALLY_FIELDS = ("requests", "rows", "agreed", "abs_diff_sum", "dropped", "failures")


def version_ids(session: Session, model: Model, numbers: list[int]) -> dict[int, int]:
    """Version number -> id, for the numbers of ``model`` that exist."""
    rows = session.execute(
        select(ModelVersion.version, ModelVersion.id).where(
            ModelVersion.model_id == model.id, ModelVersion.version.in_(numbers)
        )
    ).tuples()
    return {number: key for number, key in rows}


def add_shadow_tally(
    session: Session, name: str, primary: int, shadow: int, tally: dict[str, float]
) -> None:
    """Add one gateway's counts since its last flush to the running totals."""
    model = get_model(session, name)
    ids = version_ids(session, model, [primary, shadow])
    if primary not in ids or shadow not in ids:
        return
    where = (
        ShadowComparison.model_id == model.id,
        ShadowComparison.primary_version_id == ids[primary],
        ShadowComparison.shadow_version_id == ids[shadow],
    )
    changes: dict[str, Any] = {
        field: getattr(ShadowComparison, field) + tally.get(field, 0) for field in TALLY_FIELDS
    }
    changes["updated_at"] = utcnow()
    for _ in range(2):
        if rows_changed(session, update(ShadowComparison).where(*where).values(**changes)):
            return
        try:
            with session.begin_nested():
                session.add(
                    ShadowComparison(
                        model_id=model.id,
                        primary_version_id=ids[primary],
                        shadow_version_id=ids[shadow],
                        **{field: tally.get(field, 0) for field in TALLY_FIELDS},
                    )
                )
            return
        except IntegrityError:
            continue  # another gateway inserted it first: add to theirs


def shadowed(session: Session) -> set[str]:
    """The models that have shadow comparisons."""
    rows = session.scalars(
        select(Model.name).join(ShadowComparison, ShadowComparison.model_id == Model.id).distinct()
    )
    return set(rows)


def shadow_stats(session: Session, name: str) -> list[ShadowStats]:
    """Every shadow comparison of the model, newest first."""
    model = get_model(session, name)
    numbers = {
        key: number
        for key, number in session.execute(
            select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == model.id)
        ).tuples()
    }
    rows = session.scalars(
        select(ShadowComparison)
        .where(ShadowComparison.model_id == model.id)
        .order_by(ShadowComparison.updated_at.desc())
    )
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
        for row in rows
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
    session.add(
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
    session.flush()


def log_parts(session: Session, name: str) -> list[RequestLogPart]:
    """The model's request-log parts, oldest first."""
    model = get_model(session, name)
    return list(
        session.scalars(
            select(RequestLogPart)
            .where(RequestLogPart.model_id == model.id)
            .order_by(RequestLogPart.created_at, RequestLogPart.id)
        )
    )


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
        dropped.append(part.key)
        session.delete(part)
    session.flush()
    return dropped


def drift_reference(
    session: Session, version_id: int
) -> tuple[list[ColumnProfile], Any, int, list[str]] | None:
    """The training profile of a version's dataset (columns, its encoding, rows, feature
    names), or None for a version without one (an upload)."""
    row = session.execute(
        select(Dataset)
        .join(ModelVersion, ModelVersion.dataset_id == Dataset.id)
        .where(ModelVersion.id == version_id)
    ).scalar_one_or_none()
    if row is None or row.profile is None:
        return None
    return list(row.profile.columns), row.encoding, row.n_rows, list(row.feature_names)


KEPT_WINDOWS = 1000  # drift windows kept per model (the oldest go)
KEPT_EVENTS = 1000  # events kept per model


def _trim(
    session: Session, table: type[DriftWindow] | type[ModelEventRow], model_id: int, keep: int
) -> None:
    """Delete a model's rows of ``table`` beyond the newest ``keep``."""
    cutoff = session.scalar(
        select(table.id)
        .where(table.model_id == model_id)
        .order_by(table.id.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is not None:
        session.execute(delete(table).where(table.model_id == model_id, table.id <= cutoff))


def add_drift_window(
    session: Session, name: str, version: int, report: DriftReport, max_psi: float | None
) -> bool:
    """Store one window's report (the newest ``KEPT_WINDOWS`` of a model are kept); whether
    its drifted columns differ from the previous window's: a drift that starts or changes
    is news, the same drift again is not."""
    model = get_model(session, name)
    ids = version_ids(session, model, [version])
    if version not in ids:
        return False
    previous = session.scalar(
        select(DriftWindow.report)
        .where(DriftWindow.model_id == model.id, DriftWindow.version_id == ids[version])
        .order_by(DriftWindow.id.desc())
        .limit(1)
    )
    before = set(previous.get("drifted", [])) if isinstance(previous, dict) else set()
    session.add(
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
    session.flush()
    _trim(session, DriftWindow, model.id, KEPT_WINDOWS)
    return set(report.drifted) != before


def latest_drift(session: Session, name: str, limit: int = 20) -> list[DriftReport]:
    """The model's most recent drift windows, newest first."""
    model = get_model(session, name)
    rows = session.scalars(
        select(DriftWindow)
        .where(DriftWindow.model_id == model.id)
        .order_by(DriftWindow.ended_at.desc(), DriftWindow.id.desc())
        .limit(limit)
    )
    return [DriftReport.model_validate(row.report) for row in rows]


def latest_drift_by_model(session: Session) -> dict[str, DriftReport]:
    """Each model's newest drift window (what ``/metrics`` shows)."""
    newest = (
        select(DriftWindow.model_id, func.max(DriftWindow.id).label("id"))
        .group_by(DriftWindow.model_id)
        .subquery()
    )
    rows = session.execute(
        select(Model.name, DriftWindow.report)
        .join(newest, newest.c.id == DriftWindow.id)
        .join(Model, Model.id == DriftWindow.model_id)
    ).tuples()
    return {name: DriftReport.model_validate(report) for name, report in rows}


def add_event(
    session: Session, name: str, kind: str, message: str, detail: dict[str, Any] | None = None
) -> None:
    """Record something serving noticed about a model (its newest ``KEPT_EVENTS`` kept)."""
    model = get_model(session, name)
    session.add(ModelEventRow(model_id=model.id, kind=kind, message=message, detail=detail))
    session.flush()
    _trim(session, ModelEventRow, model.id, KEPT_EVENTS)


def events(session: Session, name: str, limit: int = 50) -> list[ModelEvent]:
    """The model's events, newest first."""
    model = get_model(session, name)
    rows = session.scalars(
        select(ModelEventRow)
        .where(ModelEventRow.model_id == model.id)
        .order_by(ModelEventRow.created_at.desc(), ModelEventRow.id.desc())
        .limit(limit)
    )
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
    rows = session.execute(
        select(Model.name, ModelEventRow.kind, func.count())
        .join(Model, Model.id == ModelEventRow.model_id)
        .group_by(Model.name, ModelEventRow.kind)
    ).tuples()
    return {(name, kind): count for name, kind, count in rows}

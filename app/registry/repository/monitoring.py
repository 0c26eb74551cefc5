"""SQL for what serving records about a model: shadow comparisons (running totals that
gateways add to), request-log parts, drift windows, each gateway's progress through its
open drift window, and events. The tables that grow keep a model's newest rows only
(``trim_to_newest``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts.traffic import DriftReport
from app.core.db import rows_changed, utcnow
from app.core.repository import Repository
from app.tables import (
    DriftProgressRow,
    DriftWindow,
    Model,
    ModelEventRow,
    ModelVersion,
    RequestLogPart,
    ShadowComparison,
)

# The running totals a gateway adds to, each by the name its tally counts it under.
TALLY_COLUMNS = (
    ShadowComparison.requests,
    ShadowComparison.rows,
    ShadowComparison.agreed,
    ShadowComparison.abs_diff_sum,
    ShadowComparison.dropped,
    ShadowComparison.failures,
)
TALLY_FIELDS = tuple(column.key for column in TALLY_COLUMNS)


def trim_to_newest(
    session: Session, table: type[DriftWindow] | type[ModelEventRow], model_id: int, keep: int
) -> None:
    """Delete a model's rows of ``table`` beyond the newest ``keep`` (by id)."""
    cutoff = session.scalar(
        select(table.id)
        .where(table.model_id == model_id)
        .order_by(table.id.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is not None:
        session.execute(delete(table).where(table.model_id == model_id, table.id <= cutoff))


class ShadowComparisonRepository(Repository[ShadowComparison]):
    """Running totals of a shadow's answers against the primary's."""

    row_type = ShadowComparison
    noun = "shadow comparison"

    def add_tally(
        self, model_id: int, primary_id: int, shadow_id: int, tally: Mapping[str, float]
    ) -> None:
        """Add ``tally`` (counts by ``TALLY_FIELDS``, an absent one 0) to the pair's totals:
        a conditional increment, or the first row when there is none; when another gateway
        inserts that row first, its insert wins and this adds to it."""
        where = (
            ShadowComparison.model_id == model_id,
            ShadowComparison.primary_version_id == primary_id,
            ShadowComparison.shadow_version_id == shadow_id,
        )
        increments = (
            update(ShadowComparison)
            .where(*where)
            .values({column: column + tally.get(column.key, 0) for column in TALLY_COLUMNS})
            .values(updated_at=utcnow())
        )
        for _ in range(2):
            if rows_changed(self.session, increments):
                return
            try:
                with self.session.begin_nested():
                    self.session.add(
                        ShadowComparison(
                            model_id=model_id,
                            primary_version_id=primary_id,
                            shadow_version_id=shadow_id,
                            **{name: tally.get(name, 0) for name in TALLY_FIELDS},
                        )
                    )
                return
            except IntegrityError:
                continue  # another gateway inserted it first: add to theirs

    def model_names(self) -> set[str]:
        """The models that have shadow comparisons."""
        rows = self.session.scalars(
            select(Model.name)
            .join(ShadowComparison, ShadowComparison.model_id == Model.id)
            .distinct()
        )
        return set(rows)

    def of_model(self, model_id: int) -> list[ShadowComparison]:
        """Every comparison of the model, the most recently added to first."""
        return list(
            self.session.scalars(
                select(ShadowComparison)
                .where(ShadowComparison.model_id == model_id)
                .order_by(ShadowComparison.updated_at.desc())
            )
        )


class RequestLogRepository(Repository[RequestLogPart]):
    """The Parquet parts of a model's request log."""

    row_type = RequestLogPart
    noun = "request-log part"

    def oldest_first(self, model_id: int) -> list[RequestLogPart]:
        return list(
            self.session.scalars(
                select(RequestLogPart)
                .where(RequestLogPart.model_id == model_id)
                .order_by(RequestLogPart.created_at, RequestLogPart.id)
            )
        )

    def forget(self, parts: list[RequestLogPart]) -> None:
        """Delete the rows of ``parts`` (their files are the caller's, after the commit)."""
        for part in parts:
            self.session.delete(part)
        self.session.flush()


class DriftWindowRepository(Repository[DriftWindow]):
    """Drift windows: each the stored report of one window of a version's live rows."""

    row_type = DriftWindow
    noun = "drift window"

    def newest_report(self, model_id: int, version_id: int) -> DriftReport | None:
        """The report of the version's newest window (None: it has none)."""
        report = self.session.scalar(
            select(DriftWindow.report)
            .where(DriftWindow.model_id == model_id, DriftWindow.version_id == version_id)
            .order_by(DriftWindow.id.desc())
            .limit(1)
        )
        return DriftReport.model_validate(report) if report is not None else None

    def keep_newest(self, model_id: int, keep: int) -> None:
        """Delete the model's windows beyond its newest ``keep``."""
        trim_to_newest(self.session, DriftWindow, model_id, keep)

    def reports_of(self, model_id: int, version_id: int, limit: int) -> list[dict[str, Any]]:
        """The reports of the version's newest ``limit`` windows, oldest first, as stored
        (JSON): a chart reads a few fields of many, and validates none."""
        reports = self.session.scalars(
            select(DriftWindow.report)
            .where(DriftWindow.model_id == model_id, DriftWindow.version_id == version_id)
            .order_by(DriftWindow.id.desc())
            .limit(limit)
        )
        return list(reversed(list(reports)))

    def newest(self, model_id: int, limit: int) -> list[DriftWindow]:
        """The model's newest ``limit`` windows (by when they ended), newest first."""
        return list(
            self.session.scalars(
                select(DriftWindow)
                .where(DriftWindow.model_id == model_id)
                .order_by(DriftWindow.ended_at.desc(), DriftWindow.id.desc())
                .limit(limit)
            )
        )

    def newest_by_model(self) -> dict[str, DriftReport]:
        """Each model's name -> the report of its newest window."""
        newest = (
            select(DriftWindow.model_id, func.max(DriftWindow.id).label("id"))
            .group_by(DriftWindow.model_id)
            .subquery()
        )
        rows = self.session.execute(
            select(Model.name, DriftWindow.report)
            .join(newest, newest.c.id == DriftWindow.id)
            .join(Model, Model.id == DriftWindow.model_id)
        )
        return {name: DriftReport.model_validate(report) for name, report in rows.tuples()}


class DriftProgressRepository(Repository[DriftProgressRow]):
    """Each gateway process's progress through its open drift window of a version."""

    row_type = DriftProgressRow
    noun = "drift progress"

    def record(
        self,
        model_id: int,
        version_id: int,
        gateway: str,
        *,
        rows: int,
        window_rows: int,
        sample: float,
        now: datetime,
    ) -> None:
        """Write ``gateway``'s row for the version (each process writes only its own)."""
        row = self.session.scalar(
            select(DriftProgressRow).where(
                DriftProgressRow.version_id == version_id, DriftProgressRow.gateway == gateway
            )
        )
        if row is None:
            row = DriftProgressRow(model_id=model_id, version_id=version_id, gateway=gateway)
            self.session.add(row)
        row.rows = rows
        row.window_rows = window_rows
        row.sample = sample
        row.updated_at = now
        self.session.flush()

    def forget(self, gateway: str, *, stale_before: datetime) -> None:
        """Delete ``gateway``'s rows, and every row not rewritten since ``stale_before``."""
        self.session.execute(
            delete(DriftProgressRow).where(
                (DriftProgressRow.gateway == gateway) | (DriftProgressRow.updated_at < stale_before)
            )
        )

    def live(self, model_id: int, *, since: datetime) -> list[tuple[DriftProgressRow, int]]:
        """The model's rows rewritten since ``since``, each with its version's number, by
        version and gateway."""
        rows = self.session.execute(
            select(DriftProgressRow, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == DriftProgressRow.version_id)
            .where(DriftProgressRow.model_id == model_id, DriftProgressRow.updated_at >= since)
            .order_by(ModelVersion.version, DriftProgressRow.gateway)
        )
        return list(rows.tuples())


class ModelEventRepository(Repository[ModelEventRow]):
    """What serving noticed about a model."""

    row_type = ModelEventRow
    noun = "event"

    def newest(self, model_id: int, limit: int) -> list[ModelEventRow]:
        return list(
            self.session.scalars(
                select(ModelEventRow)
                .where(ModelEventRow.model_id == model_id)
                .order_by(ModelEventRow.created_at.desc(), ModelEventRow.id.desc())
                .limit(limit)
            )
        )

    def keep_newest(self, model_id: int, keep: int) -> None:
        """Delete the model's events beyond its newest ``keep``."""
        trim_to_newest(self.session, ModelEventRow, model_id, keep)

    def counts(self) -> dict[tuple[str, str], int]:
        """(model name, kind) -> events recorded."""
        rows = self.session.execute(
            select(Model.name, ModelEventRow.kind, func.count())
            .join(Model, Model.id == ModelEventRow.model_id)
            .group_by(Model.name, ModelEventRow.kind)
        )
        return {(name, kind): count for name, kind, count in rows.tuples()}

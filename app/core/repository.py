"""The queries every table's repository shares: add, remove, get, get-or-404, read again
and a page, written once. A repository adds its own queries (conditional updates
included) on top."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.core.db import Base
from app.core.errors import NotFound

RowT = TypeVar("RowT", bound=Base)


class Repository(Generic[RowT]):
    """Queries over one table. ``noun`` names a row in a NotFound message."""

    row_type: ClassVar[type[Any]]
    noun: ClassVar[str]

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: RowT) -> RowT:
        self.session.add(row)
        self.session.flush()
        return row

    def remove(self, row: RowT) -> None:
        self.session.delete(row)
        self.session.flush()

    def refresh(self, row: RowT) -> RowT:
        """``row`` read again: a conditional update (``rows_changed``) leaves the copies
        this session holds as they were."""
        self.session.refresh(row)
        return row

    def get(self, row_id: int) -> RowT | None:
        found: RowT | None = self.session.get(self.row_type, row_id)
        return found

    def get_or_raise(self, row_id: int) -> RowT:
        """The row, or NotFound naming it (``job 7 not found``)."""
        row = self.get(row_id)
        if row is None:
            raise NotFound(f"{self.noun} {row_id} not found")
        return row

    def page(
        self, *, limit: int, offset: int, order_by: Any, where: Sequence[ColumnElement[bool]] = ()
    ) -> tuple[list[RowT], int]:
        """One page of the rows that match ``where``, and how many match in all."""
        total = (
            self.session.scalar(select(func.count()).select_from(self.row_type).where(*where)) or 0
        )
        rows = self.session.scalars(
            select(self.row_type).where(*where).order_by(order_by).limit(limit).offset(offset)
        )
        return list(rows), int(total)

"""SQL for datasets."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.tables import Dataset


class DatasetRepository:
    """Queries over the datasets table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, dataset_id: int) -> Dataset | None:
        return self.session.get(Dataset, dataset_id)

    def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        self.session.flush()
        return dataset

    def page(self, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
        total = self.session.scalar(select(func.count()).select_from(Dataset)) or 0
        rows = self.session.scalars(
            select(Dataset).order_by(Dataset.id.desc()).limit(limit).offset(offset))
        return list(rows), total

"""SQL for datasets."""

from __future__ import annotations

from app.core.repository import Repository
from app.tables import Dataset


class DatasetRepository(Repository[Dataset]):
    """Queries over the datasets table."""

    row_type = Dataset
    noun = "dataset"

    def newest_first(self, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
        return self.page(limit=limit, offset=offset, order_by=Dataset.id.desc())

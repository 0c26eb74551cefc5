"""SQL for datasets."""

from __future__ import annotations

from app.core.errors import InvalidInput, NotFound
from app.core.repository import Repository
from app.tables import Dataset


class DatasetRepository(Repository[Dataset]):
    """Queries over the datasets table."""

    row_type = Dataset
    noun = "dataset"

    def newest_first(self, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
        """Datasets whose files are kept, newest first."""
        return self.page(
            limit=limit,
            offset=offset,
            order_by=Dataset.id.desc(),
            where=[Dataset.deleted_at.is_(None)],
        )

    def kept(self, dataset_id: int) -> Dataset:
        """The dataset, or NotFound, which says so when its files were deleted."""
        row = self.get(dataset_id)
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found")
        if row.deleted_at is not None:
            raise NotFound(f"dataset {dataset_id} was deleted (its files are gone)")
        return row

    def for_job(self, dataset_id: int, field: str = "dataset_id") -> Dataset:
        """``kept`` for a job's submission: InvalidInput naming ``field``."""
        try:
            return self.kept(dataset_id)
        except NotFound as missing:
            raise InvalidInput(f"{field}: {missing.message}") from None

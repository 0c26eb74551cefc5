"""SQL for datasets, including the row lock that settles a job's submission racing the
dataset's deletion."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from app.core.db import rows_changed
from app.core.errors import InvalidInput, NotFound
from app.core.repository import Repository
from app.storage import StoredArtifact
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

    def record_files(
        self,
        dataset: Dataset,
        *,
        original: StoredArtifact,
        arrays_sha256: str,
        raw_sha256: str | None,
    ) -> Dataset:
        """What the store holds of ``dataset`` once its files are written: the uploaded
        CSV, the parsed arrays, and (with a preprocessing) the raw columns."""
        dataset.sha256 = original.sha256
        dataset.size_bytes = original.size_bytes
        dataset.arrays_sha256 = arrays_sha256
        dataset.raw_sha256 = raw_sha256
        self.session.flush()
        return dataset

    def current(self, dataset_id: int) -> Dataset | None:
        """The dataset as the database holds it now (a copy this session read earlier is
        refreshed: a conditional update does not touch it)."""
        return self.session.get(Dataset, dataset_id, populate_existing=True)

    def kept(self, dataset_id: int, *, refresh: bool = False) -> Dataset:
        """The dataset, or NotFound, which says so when its files were deleted."""
        row = self.current(dataset_id) if refresh else self.get(dataset_id)
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found")
        if row.deleted_at is not None:
            raise NotFound(f"dataset {dataset_id} was deleted (its files are gone)")
        return row

    def for_job(self, dataset_id: int, field: str = "dataset_id") -> Dataset:
        """``kept`` for a job's submission, held until its transaction ends (``hold``):
        InvalidInput naming ``field`` when the dataset is missing or deleted, also when
        its deletion committed while this call waited."""
        held = self.hold(dataset_id)
        row = self.current(dataset_id)
        if held and row is not None:
            return row
        try:
            self.kept(dataset_id)
        except NotFound as missing:
            raise InvalidInput(f"{field}: {missing.message}") from None
        raise InvalidInput(f"{field}: dataset {dataset_id} was deleted (its files are gone)")

    def hold(self, dataset_id: int) -> bool:
        """Lock the kept dataset's row until the caller's transaction ends, so that its
        deletion (``mark_deleted``) waits for this transaction, or this call for the
        deletion's; False when the dataset is missing or deleted. PostgreSQL: a share lock
        (submissions on one dataset do not wait for each other); SQLite, which has no row
        locks: a no-op conditional update, which takes the database's write lock."""
        if self.session.get_bind().dialect.name == "sqlite":
            return bool(
                rows_changed(
                    self.session,
                    update(Dataset)
                    .where(Dataset.id == dataset_id, Dataset.deleted_at.is_(None))
                    .values(deleted_at=None)
                    .execution_options(synchronize_session=False),
                )
            )
        found = self.session.scalar(
            select(Dataset.id)
            .where(Dataset.id == dataset_id, Dataset.deleted_at.is_(None))
            .with_for_update(read=True)
        )
        return found is not None

    def mark_deleted(self, dataset_id: int, now: datetime) -> bool:
        """Mark a kept dataset deleted, in one conditional update that waits for the
        transactions holding it (``hold``); True if this call marked it. A rollback
        unmarks it."""
        return bool(
            rows_changed(
                self.session,
                update(Dataset)
                .where(Dataset.id == dataset_id, Dataset.deleted_at.is_(None))
                .values(deleted_at=now)
                .execution_options(synchronize_session=False),
            )
        )

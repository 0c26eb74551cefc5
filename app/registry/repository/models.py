"""SQL for models and their versions (with what a version points at: its dataset, its
trial, its parent)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts.enums import VersionStatus
from app.core.errors import BrokenInvariant
from app.core.repository import Repository
from app.tables import Alias, Dataset, Model, ModelVersion, Trial


class ModelRepository(Repository[Model]):
    """Queries over the models table."""

    row_type = Model
    noun = "model"

    def get_by_name(self, name: str) -> Model | None:
        return self.session.scalar(select(Model).where(Model.name == name))

    def get_or_create(self, name: str, task: str) -> Model:
        """The model named ``name``, created if absent (safe against a concurrent create)."""
        model = self.get_by_name(name)
        if model is not None:
            return model
        try:
            with self.session.begin_nested():
                model = Model(name=name, task=task, latest_version=0, tags={})
                self.session.add(model)
        except IntegrityError:
            model = self.get_by_name(name)
            if model is None:
                raise
        return model

    def next_version(self, model_id: int) -> int:
        """Atomically take the next version number of a model."""
        number = self.session.scalar(
            update(Model)
            .where(Model.id == model_id)
            .values(latest_version=Model.latest_version + 1)
            .returning(Model.latest_version)
            .execution_options(synchronize_session=False)
        )
        if number is None:
            raise BrokenInvariant("number is None")
        return int(number)

    def names(self) -> list[str]:
        """Every model's name, in order."""
        return list(self.session.scalars(select(Model.name).order_by(Model.name)))

    def by_name(self, *, limit: int, offset: int) -> tuple[list[Model], int]:
        return self.page(limit=limit, offset=offset, order_by=Model.name)


class VersionRepository:
    """Queries over model versions (and the aliases that resolve to them)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, version: ModelVersion) -> ModelVersion:
        self.session.add(version)
        self.session.flush()
        return version

    def by_id(self, version_id: int) -> ModelVersion | None:
        found: ModelVersion | None = self.session.get(ModelVersion, version_id)
        return found

    def archive(self, version: ModelVersion) -> ModelVersion:
        """Mark ``version`` archived: it stops serving (its file is kept)."""
        version.status = VersionStatus.ARCHIVED
        self.session.flush()
        return version

    def get(self, model_id: int, number: int) -> ModelVersion | None:
        return self.session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == model_id, ModelVersion.version == number
            )
        )

    def latest_live(
        self, model_id: int, *, sources: tuple[str, ...] = (), excluding: int | None = None
    ) -> ModelVersion | None:
        """The newest live version (of those ``sources`` registered, when given; other
        than version number ``excluding``)."""
        query = select(ModelVersion).where(
            ModelVersion.model_id == model_id, ModelVersion.status == VersionStatus.LIVE
        )
        if sources:
            query = query.where(ModelVersion.source.in_(sources))
        if excluding is not None:
            query = query.where(ModelVersion.version != excluding)
        return self.session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))

    def alias_target(self, model_id: int, alias: str) -> ModelVersion | None:
        return self.session.scalar(
            select(ModelVersion)
            .join(Alias, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model_id, Alias.name == alias)
        )

    def count(self, model_id: int) -> int:
        return (
            self.session.scalar(
                select(func.count())
                .select_from(ModelVersion)
                .where(ModelVersion.model_id == model_id)
            )
            or 0
        )

    def page(self, model_id: int, *, limit: int, offset: int) -> tuple[list[ModelVersion], int]:
        rows = self.session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model_id)
            .order_by(ModelVersion.version.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows), self.count(model_id)

    def others_sharing_artifact(self, version: ModelVersion) -> int:
        """How many other versions whose artifact is kept point at ``version``'s file."""
        return (
            self.session.scalar(
                select(func.count())
                .select_from(ModelVersion)
                .where(
                    ModelVersion.artifact_key == version.artifact_key,
                    ModelVersion.id != version.id,
                    ModelVersion.artifact_deleted_at.is_(None),
                )
            )
            or 0
        )

    def locked(self, version: ModelVersion) -> ModelVersion:
        """``version`` re-read under a write on its row (PostgreSQL's row lock, SQLite's
        write lock) held until the commit: a read-modify-write of its metrics after it
        starts from the last committed value, and a concurrent one waits for it."""
        self.session.execute(
            update(ModelVersion).where(ModelVersion.id == version.id).values(id=ModelVersion.id)
        )
        self.session.refresh(version)
        return version

    def others_sharing_explanation(self, version: ModelVersion, key: str) -> int:
        """How many other versions whose artifact is kept name ``key`` as their explanation
        file (``metrics['explain']['key']``: a compression variant reuses its parent's)."""
        return (
            self.session.scalar(
                select(func.count())
                .select_from(ModelVersion)
                .where(
                    ModelVersion.metrics[("explain", "key")].as_string() == key,
                    ModelVersion.id != version.id,
                    ModelVersion.artifact_deleted_at.is_(None),
                )
            )
            or 0
        )

    def aliases_of(self, model_id: int) -> dict[str, int]:
        rows = self.session.execute(
            select(Alias.name, ModelVersion.version)
            .join(ModelVersion, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model_id)
            .order_by(Alias.name)
        )
        return {name: number for name, number in rows.tuples()}

    def numbers_by_id(self, model_id: int) -> dict[int, int]:
        """Version id -> version number, for every version of a model."""
        rows = self.session.execute(
            select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == model_id)
        )
        return {key: number for key, number in rows.tuples()}

    def ids_by_number(self, model_id: int, numbers: list[int]) -> dict[int, int]:
        """Version number -> id, for the ``numbers`` of a model that exist."""
        rows = self.session.execute(
            select(ModelVersion.version, ModelVersion.id).where(
                ModelVersion.model_id == model_id, ModelVersion.version.in_(numbers)
            )
        )
        return {number: key for number, key in rows.tuples()}

    def dataset_of(self, version: ModelVersion) -> Dataset | None:
        """The dataset ``version`` was trained on (None for an upload, or one without)."""
        if version.dataset_id is None:
            return None
        found: Dataset | None = self.session.get(Dataset, version.dataset_id)
        return found

    def training_dataset(self, version_id: int) -> Dataset | None:
        """``dataset_of`` the version with id ``version_id``, in one query."""
        return self.session.execute(
            select(Dataset)
            .join(ModelVersion, ModelVersion.dataset_id == Dataset.id)
            .where(ModelVersion.id == version_id)
        ).scalar_one_or_none()

    def trial_number(self, version: ModelVersion) -> int | None:
        """The number, in its search, of the trial that made ``version`` (None: no trial)."""
        if version.trial_id is None:
            return None
        trial = self.session.get(Trial, version.trial_id)
        return trial.number if trial is not None else None

"""SQL for models, versions and aliases."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts.enums import VersionStatus
from app.core.errors import BrokenInvariant
from app.core.repository import Repository
from app.tables import Alias, Model, ModelVersion


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
    """Queries over model versions and aliases."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, version: ModelVersion) -> ModelVersion:
        self.session.add(version)
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

    def aliases_of(self, model_id: int) -> dict[str, int]:
        rows = self.session.execute(
            select(Alias.name, ModelVersion.version)
            .join(ModelVersion, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model_id)
            .order_by(Alias.name)
        )
        return {name: number for name, number in rows.tuples()}

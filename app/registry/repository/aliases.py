"""SQL for aliases and their history: which version (or split of versions, and shadow) each
alias of a model holds now, and which held it from when to when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.contracts.traffic import TrafficSplit
from app.core.repository import Repository
from app.tables import Alias, AliasHistory, ModelVersion


class AliasRepository(Repository[Alias]):
    """Queries over a model's aliases and their history."""

    row_type = Alias
    noun = "alias"

    def find(self, model_id: int, name: str) -> Alias | None:
        found: Alias | None = self.session.scalar(
            select(Alias).where(Alias.model_id == model_id, Alias.name == name)
        )
        return found

    def of_model(self, model_id: int) -> list[Alias]:
        return list(self.session.scalars(select(Alias).where(Alias.model_id == model_id)))

    def point(
        self,
        model_id: int,
        name: str,
        current: Alias | None,
        *,
        version_id: int,
        now: datetime,
        split: TrafficSplit | None = None,
        shadow_id: int | None = None,
    ) -> bool:
        """Point the alias (``current``, as ``find`` read it; None: create it) at
        ``version_id`` with ``split`` and ``shadow_id``, and open its history entry, in a
        savepoint; False, and nothing written, when a concurrent write created the alias
        or its entry first (the unique constraints refused this one)."""
        try:
            with self.session.begin_nested():
                if current is None:
                    self.session.add(
                        Alias(
                            model_id=model_id,
                            name=name,
                            version_id=version_id,
                            split=split,
                            shadow_version_id=shadow_id,
                            updated_at=now,
                        )
                    )
                else:
                    current.version_id = version_id
                    current.split = split
                    current.shadow_version_id = shadow_id
                    current.updated_at = now
                self.session.add(
                    AliasHistory(
                        model_id=model_id,
                        alias=name,
                        version_id=version_id,
                        split=split,
                        shadow_version_id=shadow_id,
                        assigned_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    def close_history(self, model_id: int, name: str, now: datetime) -> None:
        """End the alias's open history entry (if any) at ``now``."""
        self.session.execute(
            update(AliasHistory)
            .where(
                AliasHistory.model_id == model_id,
                AliasHistory.alias == name,
                AliasHistory.removed_at.is_(None),
            )
            .values(removed_at=now)
            .execution_options(synchronize_session=False)
        )

    def history(self, model_id: int, name: str) -> list[tuple[AliasHistory, int]]:
        """Each history entry of the alias with its main version's number, newest first."""
        rows = self.session.execute(
            select(AliasHistory, ModelVersion.version)
            .join(ModelVersion, AliasHistory.version_id == ModelVersion.id)
            .where(AliasHistory.model_id == model_id, AliasHistory.alias == name)
            .order_by(AliasHistory.assigned_at.desc(), AliasHistory.id.desc())
        )
        return list(rows.tuples())

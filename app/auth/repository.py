"""SQL for API keys and for the stored answers to keyed (``Idempotency-Key``) requests,
which belong to the key that sent them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app.contracts.enums import Scope
from app.core.db import rows_changed, utcnow
from app.core.repository import Repository
from app.tables import ApiKey, IdempotentRequest


class ApiKeyRepository(Repository[ApiKey]):
    """Queries over API keys (stored by digest; the secret never is)."""

    row_type = ApiKey
    noun = "API key"

    def by_digest(self, digest: str) -> ApiKey | None:
        found: ApiKey | None = self.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        return found

    def oldest_first(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.id)))

    def revoke(self, row: ApiKey) -> bool:
        """Revoke the key unless it is revoked already (the first revocation's time stays);
        False, and nothing changed, when it is the last admin key not revoked. One
        conditional update decides, so two admin keys revoked at once cannot both go: on
        PostgreSQL every admin key not revoked is locked first (the second revocation waits,
        then counts again); SQLite's write lock makes the update alone decide."""
        admin = Scope.ADMIN.value
        if row.scope == admin:
            self.session.execute(
                select(ApiKey.id)
                .where(ApiKey.scope == admin, ApiKey.revoked_at.is_(None))
                .with_for_update()
            )
        other = aliased(ApiKey)
        another_admin = (
            select(other.id)
            .where(other.scope == admin, other.revoked_at.is_(None), other.id != row.id)
            .exists()
        )
        rows_changed(
            self.session,
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.scope != admin, another_admin),
            )
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False),
        )
        self.session.refresh(row)
        return row.revoked_at is not None

    def count_active(self) -> int:
        return (
            self.session.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
            )
            or 0
        )


class IdempotentRequestRepository(Repository[IdempotentRequest]):
    """Stored answers, one per (key, route, Idempotency-Key)."""

    row_type = IdempotentRequest
    noun = "keyed request"

    def find(self, *, api_key_id: int, route: str, key: str) -> IdempotentRequest | None:
        found: IdempotentRequest | None = self.session.scalar(
            select(IdempotentRequest).where(
                IdempotentRequest.api_key_id == api_key_id,
                IdempotentRequest.route == route,
                IdempotentRequest.key == key,
            )
        )
        return found

    def add_unless_taken(self, row: IdempotentRequest) -> bool:
        """Store ``row`` in the caller's transaction; False when a row with its key exists
        (the transaction must then roll back: the database refused the insert)."""
        self.session.add(row)
        try:
            self.session.flush()
        except IntegrityError:
            return False
        return True

    def delete_older_than(self, cutoff: datetime) -> int:
        return rows_changed(
            self.session, delete(IdempotentRequest).where(IdempotentRequest.created_at < cutoff)
        )

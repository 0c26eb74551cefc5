"""API keys: generation, hashing, lookup, revocation and the first admin key."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from app.auth.repository import ApiKeyRepository
from app.auth.scopes import Principal
from app.contracts.enums import Scope
from app.core.db import Session
from app.core.errors import Conflict, Unauthorized
from app.core.names import KEY_NAME
from app.tables import ApiKey

KEY_PREFIX = "kiln_"


@dataclass(frozen=True)
class NewKey:
    """A freshly created key; ``secret`` is shown once and never stored."""

    id: int
    name: str
    scope: Scope
    secret: str


def hash_secret(secret: str) -> str:
    """SHA-256 of a key. Keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(session: Session, *, name: str, scope: Scope) -> NewKey:
    """Make a random key (32 bytes of entropy) and store only its hash."""
    KEY_NAME.check(name, "name")  # the CLI comes here without the API's schema
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRepository(session).add(
        ApiKey(name=name, scope=scope, key_hash=hash_secret(secret), prefix=secret[:12])
    )
    return NewKey(id=row.id, name=name, scope=scope, secret=secret)


def authenticate(session: Session, secret: str) -> Principal:
    """The principal for a presented key, or Unauthorized."""
    digest = hash_secret(secret)
    row = ApiKeyRepository(session).by_digest(digest)
    # The lookup is by digest; the constant-time compare keeps the final check timing-flat.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("invalid or revoked API key")
    return Principal(key_id=row.id, name=row.name, scope=Scope(row.scope))


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (secrets are not stored, so none are shown)."""
    return ApiKeyRepository(session).oldest_first()


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key; a revoked key stops working at once. Revoking a revoked key answers
    with it again. Any admin key may be revoked, the caller's own included, except the
    last one not revoked: a Conflict, since after it only shell access to the server could
    make another."""
    repository = ApiKeyRepository(session)
    row = repository.get_or_raise(key_id)
    if not repository.revoke(row):
        raise Conflict(
            f"API key {key_id} ({row.name!r}) is the last admin key; create another admin "
            "key (POST /v1/keys with scope admin) before revoking this one"
        )
    return row


def count_active_keys(session: Session) -> int:
    """How many keys are not revoked."""
    return ApiKeyRepository(session).count_active()


def bootstrap_admin_key(session: Session, key_file: Path) -> NewKey | None:
    """On a registry with no keys, create an admin key and write it to ``key_file`` (0600)."""
    if count_active_keys(session) > 0:
        return None
    new_key = create_key(session, name="bootstrap-admin", scope=Scope.ADMIN)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new_key.secret + "\n")
    os.chmod(key_file, 0o600)
    return new_key

"""Dashboard sessions: what the sign-in cookie holds instead of the API key.

A session token is ``<key id>.<expiry>.<mac>``: the id of the key that signed in, when the
session ends (Unix seconds), and an HMAC-SHA256 over both and the key's stored digest,
under a server secret (``KILN_UI_SECRET``, else a random one kept in the data directory,
mode 0600). A stolen cookie is no API key: it opens the dashboard only, only until its
expiry, and only while the key stays active (revoking the key ends every session of it at
once, and so does changing the secret). It carries the key's digest only inside the MAC,
so nothing in it leads back to the key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from app.auth.repository import ApiKeyRepository
from app.auth.scopes import Principal
from app.contracts.enums import Scope
from app.core.db import Session
from app.core.errors import Unauthorized

SECRET_BYTES = 32
_EXPIRED = "dashboard session expired or not valid; sign in again"


def _mac(secret: bytes, key_id: int, expires: int, key_digest: str) -> str:
    message = f"kiln-ui-session|{key_id}|{expires}|{key_digest}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_token(secret: bytes, key_id: int, key_digest: str, lifetime_s: float) -> str:
    """A session token for the key ``key_id`` (whose stored digest is ``key_digest``)."""
    expires = int(time.time() + lifetime_s)
    return f"{key_id}.{expires}.{_mac(secret, key_id, expires, key_digest)}"


def session_principal(session: Session, secret: bytes, token: str) -> Principal:
    """The principal of a valid, unexpired token whose key is still active; else
    Unauthorized (one message for every reason: the answer tells a forger nothing)."""
    parts = token.split(".")
    if (
        len(token) > 200
        or not token.isascii()  # str.isdigit takes '²' and other digits int() refuses
        or len(parts) != 3
        or not parts[0].isdigit()
        or not parts[1].isdigit()
    ):
        raise Unauthorized(_EXPIRED)
    key_id, expires = int(parts[0]), int(parts[1])
    if expires < time.time() or key_id > 2**31:
        raise Unauthorized(_EXPIRED)
    row = ApiKeyRepository(session).get(key_id)
    if row is None or row.revoked_at is not None:
        raise Unauthorized(_EXPIRED)
    if not hmac.compare_digest(_mac(secret, key_id, expires, row.key_hash), parts[2]):
        raise Unauthorized(_EXPIRED)
    return Principal(key_id=row.id, name=row.name, scope=Scope(row.scope))


def server_secret(configured: str, path: Path) -> bytes:
    """``configured`` (KILN_UI_SECRET) when set; else the secret in ``path``, created on
    first use. Gateway processes sharing the data directory share it: the first to start
    writes it whole (a private temporary file linked into place), the others read it."""
    if configured:
        return configured.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as written:
            written.write(secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(temporary, path)  # fails if another process linked its own first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_bytes()

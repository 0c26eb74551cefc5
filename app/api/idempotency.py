"""``Idempotency-Key`` on the routes that create things (``POST /v1/jobs``,
``POST /v1/datasets``). A client that does not know whether its request arrived (a timeout,
a dropped connection) sends it again with the same key: the first answer comes back and
nothing is created twice. The same key with a different body is a 409: it would otherwise
silently answer a request that was not made.

The answer is stored in the request's own transaction, next to the job or dataset it
describes, so either both exist or neither. Keys belong to the API key that sent them and
are kept for ``KEEP_HOURS``; the reaper forgets older ones."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from app.auth.repository import IdempotentRequestRepository
from app.core.db import Session
from app.core.errors import Conflict
from app.tables import IdempotentRequest

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII without spaces, as for a header token
KEEP_HOURS = 24
CHUNK = 1 << 20


@dataclass(frozen=True)
class KeyedRequest:
    """Who sent which key to which route, and what its body hashed to."""

    api_key_id: int
    route: str
    key: str
    body_hash: str


@dataclass(frozen=True)
class Answer:
    """The first answer to a keyed request."""

    status_code: int
    body: dict[str, Any]


def fingerprint(*parts: str | bytes, files: tuple[Path, ...] = ()) -> str:
    """SHA-256 over ``parts`` (each length-prefixed, so fields cannot run into each other)
    and the contents of ``files``."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    for path in files:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def earlier_answer(session: Session, request: KeyedRequest) -> Answer | None:
    """The stored answer to an earlier request with this key, or None; a Conflict when
    that request had a different body."""
    row = IdempotentRequestRepository(session).find(
        api_key_id=request.api_key_id, route=request.route, key=request.key
    )
    if row is None:
        return None
    if row.fingerprint != request.body_hash:
        raise Conflict(
            f"{HEADER} {request.key!r} was used for a different {request.route} "
            "request; send a new key for a new request"
        )
    return Answer(row.status_code, row.response)


def remember(session: Session, request: KeyedRequest, answer: Answer) -> None:
    """Store ``answer`` for the key in the request's transaction. A request with the same
    key that got there first (still running, or committed a moment ago) makes this one a
    Conflict, and its transaction, with whatever it created, rolls back."""
    stored = IdempotentRequestRepository(session).add_unless_taken(
        IdempotentRequest(
            api_key_id=request.api_key_id,
            route=request.route,
            key=request.key,
            fingerprint=request.body_hash,
            status_code=answer.status_code,
            response=answer.body,
        )
    )
    if not stored:
        raise Conflict(
            f"another {request.route} request with {HEADER} {request.key!r} is "
            "being answered; send this one again to get its answer"
        )


def forget_expired(session: Session, now: datetime) -> int:
    """Drop answers older than ``KEEP_HOURS``; how many."""
    return IdempotentRequestRepository(session).delete_older_than(now - timedelta(hours=KEEP_HOURS))

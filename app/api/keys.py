"""/v1/keys: API key management (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter

from app import auth
from app.api.deps import AdminAccess, SessionDep
from app.api.errors_schema import V1_ERRORS
from app.api.params import IdPath
from app.api.schemas import KeyCreate, KeyCreated, KeyRead
from app.contracts.enums import Scope

router = APIRouter(
    prefix="/v1/keys", tags=["keys"], dependencies=[AdminAccess], responses=V1_ERRORS
)


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(session: SessionDep, body: KeyCreate) -> KeyCreated:
    """Create a key; its secret is in this response only."""
    new = auth.create_key(session, name=body.name, scope=Scope(body.scope))
    row = next(key for key in auth.list_keys(session) if key.id == new.id)
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=new.secret)


@router.get("", response_model=list[KeyRead])
def list_keys(session: SessionDep) -> list[KeyRead]:
    """Every key (secrets are never stored, so never shown)."""
    return [KeyRead.model_validate(row) for row in auth.list_keys(session)]


@router.delete("/{key_id}", response_model=KeyRead)
def revoke_key(session: SessionDep, key_id: IdPath) -> KeyRead:
    """Revoke a key; it stops working at once. An admin key may revoke itself, but the last
    admin key not revoked is kept: 409 (create another admin key first)."""
    return KeyRead.model_validate(auth.revoke_key(session, key_id))

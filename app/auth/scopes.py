"""Who is calling (a ``Principal``) and which key scopes satisfy a route's scope."""

from __future__ import annotations

from dataclasses import dataclass

from app.contracts.enums import Scope
from app.core.errors import Forbidden

# Which key scopes satisfy a route's required scope.
_GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset({Scope.ADMIN}),
    Scope.WRITE: frozenset({Scope.ADMIN, Scope.WRITE}),
    Scope.READ: frozenset({Scope.ADMIN, Scope.WRITE, Scope.READ}),
    Scope.INFER: frozenset({Scope.ADMIN, Scope.WRITE, Scope.INFER}),
}


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: which key, with what scope."""

    key_id: int
    name: str
    scope: Scope


def check_scope(principal: Principal, required: Scope) -> None:
    """Raise Forbidden unless the principal's scope grants ``required``."""
    if principal.scope not in _GRANTS[required]:
        raise Forbidden(
            f"API key '{principal.name}' has scope '{principal.scope}'; "
            f"this route needs '{required}'"
        )

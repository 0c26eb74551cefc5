"""Who is calling (a ``Principal``) and which key scopes satisfy a route's scope."""

from __future__ import annotations

from dataclasses import dataclass

from app.contracts.enums import Scope
from app.core.errors import Forbidden

# What each scope covers. A key has one scope; ``logs`` (the request log: clients' raw
# inputs) is covered only by a scope that names it (or admin), never by read or write.
_COVERS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset({Scope.ADMIN, Scope.WRITE, Scope.READ, Scope.INFER, Scope.LOGS}),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ, Scope.INFER}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.INFER: frozenset({Scope.INFER}),
    Scope.LOGS: frozenset({Scope.LOGS}),
    Scope.READ_LOGS: frozenset({Scope.READ, Scope.LOGS}),
    Scope.WRITE_LOGS: frozenset({Scope.WRITE, Scope.READ, Scope.INFER, Scope.LOGS}),
}
# Which key scopes satisfy a route's required scope: those that cover all it covers.
_GRANTS: dict[Scope, frozenset[Scope]] = {
    required: frozenset(key for key in Scope if _COVERS[required] <= _COVERS[key])
    for required in Scope
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

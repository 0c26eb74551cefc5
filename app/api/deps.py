"""Request dependencies: settings, the transaction-owning session, and API-key scopes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.state import gateway_of
from app.auth import Principal, check_scope
from app.contracts.enums import Scope
from app.core.config import Settings
from app.core.db import Session, session_scope
from app.core.errors import Unauthorized
from app.jobs.queue import JobQueue
from app.serving.directory import ServingDirectory
from app.storage import ArtifactStore

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer kiln_...`")


async def get_settings(request: Request) -> Settings:
    settings: Settings = gateway_of(request.app).settings
    return settings


async def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = gateway_of(request.app).store
    return store


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = gateway_of(request.app).queue
    return queue


def get_session(request: Request) -> Iterator[Session]:
    """The request's one transaction: committed when the handler returns, before the
    response is sent; actions deferred until commit (enqueueing) run right after."""
    with session_scope(gateway_of(request.app).settings.database_url) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_directory(request: Request) -> ServingDirectory:
    directory: ServingDirectory = gateway_of(request.app).directory
    return directory


DirectoryDep = Annotated[ServingDirectory, Depends(get_directory)]


async def require_any_key(
    directory: DirectoryDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Any valid key, whatever its scope. A key checked a moment ago is not looked up
    again (see ``ServingDirectory``), so the hot path does no database work for it."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    principal = directory.cached_principal(credentials.credentials)
    if principal is None:
        principal = await run_in_threadpool(directory.authenticate, credentials.credentials)
    return principal


def require(scope: Scope) -> Callable[..., Any]:
    """A dependency that admits only API keys whose scope grants ``scope``."""

    async def dependency(principal: Annotated[Principal, Depends(require_any_key)]) -> Principal:
        check_scope(principal, scope)
        return principal

    return dependency


AnyKey = Depends(require_any_key)
ReadAccess = Depends(require(Scope.READ))
WriteAccess = Depends(require(Scope.WRITE))
AdminAccess = Depends(require(Scope.ADMIN))
InferAccess = Depends(require(Scope.INFER))
# The request log holds clients' raw inputs: only keys created with ``logs`` read it, and
# a dataset made from it needs ``write+logs``.
LogsAccess = Depends(require(Scope.LOGS))
WriteLogsAccess = Depends(require(Scope.WRITE_LOGS))
WritePrincipal = Annotated[Principal, WriteAccess]

"""What the inference routes share at the HTTP edge: the API-key check (through the serving
cache) and the routing and logging headers. The work itself is the inference core's
(``app.serving.core``), the same for ``/v1`` predict, ``/v2`` infer (both served ahead of
FastAPI by ``app.api.fast_path``) and gRPC."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.auth import Principal, check_scope
from app.contracts.enums import Scope as KeyScope
from app.contracts.traffic import REQUEST_ID_HEADER, ROUTE_KEY_HEADER
from app.core.errors import Unauthorized
from app.serving.codecs.base import RequestMeta
from app.serving.directory import ServingDirectory
from app.serving.request_log import valid_request_id


def meta_of(request: Request) -> RequestMeta:
    """The routing key and request id of a request through FastAPI's routes."""
    return RequestMeta(
        request.headers.get(ROUTE_KEY_HEADER),
        valid_request_id(request.headers.get(REQUEST_ID_HEADER)),
    )


HTTP_KEY = "send the header 'Authorization: Bearer <key>'"
GRPC_KEY = (
    "send the metadata 'authorization: Bearer <key>' (gRPC keys are lowercase: "
    "tritonclient.grpc takes headers={'authorization': 'Bearer <key>'})"
)


def _bearer(authorization: str, how: str = HTTP_KEY) -> str:
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(f"missing API key: {how}")
    return secret.strip()


def authorize_on_this_thread(
    directory: ServingDirectory, authorization: str, scope: KeyScope | None
) -> Principal:
    """``authorize`` for a gRPC call, on its own thread (blocking on a cache miss)."""
    secret = _bearer(authorization, GRPC_KEY)
    principal = directory.cached_principal(secret) or directory.authenticate(secret)
    if scope is not None:
        check_scope(principal, scope)
    return principal


async def authorize(
    directory: ServingDirectory, authorization: str, scope: KeyScope | None
) -> Principal:
    """The key of an ``Authorization: Bearer <key>`` value, checked (through the cache) for
    ``scope`` (None: any valid key)."""
    secret = _bearer(authorization)
    principal = directory.cached_principal(secret)
    if principal is None:
        principal = await run_in_threadpool(directory.authenticate, secret)
    if scope is not None:
        check_scope(principal, scope)
    return principal

"""One rendering of errors: ``{"detail": ...}`` on /v1, ``{"error": ...}`` on /v2 (the
inference protocol's shape)."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from app.api.state import GatewayState
from app.core.db import DATABASE_UNAVAILABLE, VALUE_UNSTORABLE
from app.core.errors import KilnError, RefusedBelow, Unauthorized
from app.core.names import shown
from app.kinds import JOB_KINDS

logger = logging.getLogger(__name__)


# The database down: the request may be sent again, so a 503 with Retry-After, not a 500.
DATABASE_MESSAGE = "the registry database is unavailable right now; retry shortly"
RETRY_AFTER = {"Retry-After": "2"}
ECHO_CHARS = 200  # the most of a client's input a validation error repeats
ARTIFACT_MESSAGE = "a file this request needs is missing from the artifact store"
# A value the database cannot store (PostgreSQL: a number past its column, text holding a
# NUL character) that no check caught earlier: the client's input, so a 422, never a 500.
UNSTORABLE_MESSAGE = (
    "a value in the request cannot be stored: a number out of range, or text with a NUL character"
)


@dataclass(frozen=True)
class Failure:
    """What a request that raised is answered with."""

    status: int
    message: str
    headers: dict[str, str]


def failure_of(error: Exception) -> Failure:
    """The answer to an exception, the same for FastAPI's routes and the fast path: our
    errors as they say, the database down (503), an unstorable value (422), else 500."""
    if isinstance(error, KilnError):
        return Failure(
            error.status_code,
            error.message,
            {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else {},
        )
    if isinstance(error, VALUE_UNSTORABLE):
        return Failure(422, UNSTORABLE_MESSAGE, {})
    if isinstance(error, DATABASE_UNAVAILABLE):
        return Failure(503, DATABASE_MESSAGE, RETRY_AFTER)
    if isinstance(error, FileNotFoundError):  # an artifact gone from the store
        return Failure(503, ARTIFACT_MESSAGE, {})
    return Failure(500, "internal error", {})


def error_response(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The error body for ``path``, with ``status``: a page for the dashboard's pages."""
    if path.startswith("/ui"):
        return HTMLResponse(
            f"<!doctype html><html lang=en><meta charset=utf-8><title>{status}</title>"
            "<link rel=stylesheet href=/ui/static/ui.css><main class=error>"
            f"<h1>{status}</h1><p>{html.escape(message)}</p>"
            "<p><a href=/ui/jobs>Back to the dashboard</a></p></main></html>",
            status_code=status,
            headers=headers,
        )
    body = {"error": message} if path.startswith("/v2") else {"detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{location}: {item.get('msg')}" if location else str(item.get("msg")))
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn our errors into 4xx/5xx responses."""

    async def _known_error(request: Request, error: Exception) -> Response:
        failure = failure_of(error)
        if isinstance(error, RefusedBelow):
            logger.warning(
                "%s %s: the %s layer refused the client's input (%s); a check at "
                "the API should have",
                request.method,
                request.url.path,
                error.layer,
                error.message,
            )
            state = getattr(request.app.state, "gateway", None)
            if isinstance(state, GatewayState):
                state.metrics.refused_below.labels(error.layer).inc()
        elif not isinstance(error, KilnError):
            logger.warning(
                "%s %s answered %s: %s",
                request.method,
                request.url.path,
                failure.status,
                type(error).__name__,
            )
        return error_response(
            request.url.path, failure.status, failure.message, failure.headers or None
        )

    for known in (KilnError, *DATABASE_UNAVAILABLE, *VALUE_UNSTORABLE, FileNotFoundError):
        app.add_exception_handler(known, _known_error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        return error_response(
            request.url.path,
            error.status_code,
            str(error.detail),
            dict(error.headers) if error.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        if request.url.path.startswith("/v2"):
            return error_response(request.url.path, 400, _validation_message(error))
        if request.url.path.startswith("/ui"):
            return error_response(request.url.path, 422, _validation_message(error))
        # Keep FastAPI's list form: each entry names the field (loc) and the problem (msg).
        errors = _bounded_inputs(error.errors())
        if request.url.path == "/v1/jobs":
            errors = _without_kind_tags(errors)
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _bounded_inputs(errors: Sequence[Any]) -> list[Any]:
    """The errors with each echoed ``input`` bounded: a long text quoted in part, anything
    else large left out (an answer never repeats an unbounded input back)."""
    bounded = []
    for item in errors:
        value = item.get("input")
        if isinstance(value, str) and len(value) > ECHO_CHARS:
            item = {**item, "input": shown(value)}
        elif (
            value is not None
            and not isinstance(value, str | int | float | bool)
            and len(repr(value)) > ECHO_CHARS
        ):
            item = {key: part for key, part in item.items() if key != "input"}
        bounded.append(item)
    return bounded


def _without_kind_tags(errors: Sequence[Any]) -> list[Any]:
    """pydantic puts the chosen member of a tagged union into ``loc`` (``body.search.search
    .algorithm`` for a search job); a job's ``kind`` is already in the body, so drop it,
    and name ``kind`` itself when it is missing or unknown."""
    cleaned = []
    for item in errors:
        loc = tuple(item.get("loc", ()))
        if len(loc) > 2 and loc[0] == "body" and loc[1] in JOB_KINDS:
            item = {**item, "loc": ("body", *loc[2:])}
        elif loc == ("body",) and item.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            item = {**item, "loc": ("body", "kind")}
        cleaned.append(item)
    return cleaned

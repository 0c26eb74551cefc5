"""One rendering of errors: each protocol's shape under its prefix (``{"error": ...}`` on
/v2, the inference protocol's, from the codec table), ``{"detail": ...}`` elsewhere, an
HTML page on the dashboard's paths."""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from app.api.state import GatewayState
from app.core.db import DATABASE_UNAVAILABLE, VALUE_UNSTORABLE
from app.core.errors import KilnError, RefusedBelow
from app.core.failures import failure_of
from app.core.field_errors import FieldError
from app.core.names import shown
from app.kinds import JOB_KINDS
from app.serving.codecs import error_key_for

logger = logging.getLogger(__name__)


ECHO_CHARS = 200  # the most of a client's input a validation error repeats


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
    body = {error_key_for(path): message}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in map(FieldError.of, error.errors()):
        location = ".".join(str(part) for part in item.loc if part != "body")
        parts.append(f"{location}: {item.msg}" if location else item.msg)
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
        headers = dict(error.headers) if error.headers else {}
        methods = getattr(request.app, "path_methods", None)  # app.main.Gateway's
        if error.status_code == 405 and isinstance(methods, PathMethods):
            headers["Allow"] = ", ".join(methods.allowed(request.url.path))
        return error_response(
            request.url.path, error.status_code, str(error.detail), headers or None
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


# A verb's path: text after the last parameter, in its segment ('{name}:explain').
_VERB = re.compile(r"\}[^/{}]+$")


class PathMethods:
    """The methods each path of the app has, over all its routes (FastAPI makes one route
    per method, and Starlette's 405 names only the first route's). A static path is its own:
    with ``POST /v1/jobs/predict`` and ``GET /v1/jobs/{job_id}``, ``GET /v1/jobs/predict``
    is a 405 naming ``POST``, not a 422 for a job id ``'predict'``. So is a verb's path (a
    parameter with text after it in the last segment, KServe's ``/v1/models/{name}:explain``,
    whose ':' no name holds): ``GET /v1/models/x:explain`` is a 405 naming ``POST``, not a
    422 for a model named ``'x:explain'``."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        static: dict[str, set[str]] = {}
        verbs: dict[str, tuple[re.Pattern[str], set[str]]] = {}
        self._templated: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for route in iter_route_contexts(routes):
            methods, path = route.methods, route.path_format
            if not methods or not path:
                continue
            if route.param_convertors:
                self._templated.append((route.path_regex, frozenset(methods)))
                if _VERB.search(path):
                    verbs.setdefault(path, (route.path_regex, set()))[1].update(methods)
            else:
                static.setdefault(path, set()).update(methods)
        self._static = {path: frozenset(methods) for path, methods in static.items()}
        self._verbs = [(regex, frozenset(methods)) for regex, methods in verbs.values()]

    def _own(self, path: str) -> frozenset[str] | None:
        """The methods of a static or verb ``path``, else None (a templated path's)."""
        methods = self._static.get(path)
        if methods is None:
            methods = next((m for regex, m in self._verbs if regex.match(path)), None)
        return methods

    def allowed(self, path: str) -> list[str]:
        """Every method ``path`` has (a 405's ``Allow``)."""
        own = self._own(path)
        if own is not None:
            return sorted(own)
        return sorted(
            {m for regex, methods in self._templated if regex.match(path) for m in methods}
        )

    def refused(self, method: str, path: str) -> list[str] | None:
        """The methods of a static or verb ``path`` that does not have ``method``, else
        None (the router decides)."""
        methods = self._own(path)
        return None if methods is None or method in methods else sorted(methods)


def _bounded_inputs(errors: Sequence[Any]) -> list[Any]:
    """The errors with each echoed ``input`` bounded: a long text quoted in part, anything
    else large left out (an answer never repeats an unbounded input back), and a number
    JSON cannot write (NaN, Infinity, which Python's parser accepts) named in text."""
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
        if "input" in item:
            item = {**item, "input": _json_safe(item["input"])}
        bounded.append(item)
    return bounded


def _json_safe(value: Any) -> Any:
    """``value`` with each NaN or infinity written as JSON's parsers spell them in text
    ("NaN", "Infinity", "-Infinity"): the rest of the answer is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(part) for key, part in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(part) for part in value]
    return value


def _without_kind_tags(errors: Sequence[Any]) -> list[Any]:
    """pydantic puts the chosen member of a tagged union into ``loc`` (``body.search.search
    .algorithm`` for a search job); a job's ``kind`` is already in the body, so drop it,
    and name ``kind`` itself when it is missing or unknown."""
    cleaned = []
    for item in errors:
        problem = FieldError.of(item)
        loc = problem.loc
        if len(loc) > 2 and loc[0] == "body" and loc[1] in JOB_KINDS:
            item = {**item, "loc": ("body", *loc[2:])}
        elif loc == ("body",) and problem.type in ("union_tag_invalid", "union_tag_not_found"):
            item = {**item, "loc": ("body", "kind")}
        cleaned.append(item)
    return cleaned

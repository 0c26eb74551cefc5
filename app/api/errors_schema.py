"""The error bodies as the OpenAPI document declares them, for every status a route may
answer with: ``{"detail": message}`` on /v1, where a request that fails validation gets the
list of problems instead (each naming its field in ``loc``), and ``{"error": message}`` on
/v2, the inference protocol's shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """One field that failed validation."""

    loc: list[str | int] = Field(
        description="Where: body, query, path or header, then the field's path."
    )
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every /v1 error: a message naming the problem, or the fields that failed validation."""

    detail: str | list[Problem]


class InferenceError(BaseModel):
    """Every /v2 error (Open Inference Protocol)."""

    error: str


MEANINGS = {
    400: "The request could not be read (malformed JSON, tensor, header or form).",
    401: "No valid API key (Authorization: Bearer <key>).",
    403: "The key's scope does not allow this route.",
    404: "No such dataset, job, model, version, alias or key.",
    409: "Conflicts with the current state (a finished job, an alias holding a version, an "
    "Idempotency-Key used with another body).",
    413: "The body is over a configured size limit.",
    422: "Well-formed, but breaks a rule; the message names the field.",
    503: "Exists but cannot answer right now (a model still loading, a database that is down).",
    507: "The artifact store's disk is full: nothing was stored; free space and retry.",
}


def _declared(model: type[BaseModel], statuses: tuple[int, ...]) -> dict[int | str, Any]:
    return {status: {"model": model, "description": MEANINGS[status]} for status in statuses}


V1_ERRORS = _declared(ErrorBody, (400, 401, 403, 404, 409, 413, 422, 503))
V2_ERRORS = _declared(InferenceError, (400, 401, 403, 404, 413, 422, 503))
STORES_ARTIFACTS = _declared(ErrorBody, (507,))  # routes that write to the artifact store

"""What a request that raised is answered with, the same for every entry: FastAPI's routes,
the inference fast path, gRPC and the inference core's metrics. Our errors as they say;
the database down is a 503 with Retry-After (the request may be sent again), a value the
database cannot store a 422 (the client's input), a missing artifact a 503; anything else
a 500 that says nothing of the server."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.db import DATABASE_UNAVAILABLE, VALUE_UNSTORABLE
from app.core.errors import Busy, KilnError, Unauthorized

DATABASE_MESSAGE = "the registry database is unavailable right now; retry shortly"
RETRY_AFTER = {"Retry-After": "2"}
ARTIFACT_MESSAGE = "a file this request needs is missing from the artifact store"
# A value the database cannot store (PostgreSQL: a number past its column, text holding a
# NUL character) that no check caught earlier: the client's input, so a 422, never a 500.
UNSTORABLE_MESSAGE = (
    "a value in the request cannot be stored: a number out of range, or text with a NUL character"
)


@dataclass(frozen=True)
class Failure:
    """The status, message and extra headers of an answer to an exception."""

    status: int
    message: str
    headers: dict[str, str]


def failure_of(error: BaseException) -> Failure:
    """The answer to an exception (see the module docstring)."""
    if isinstance(error, KilnError):
        headers = {}
        if isinstance(error, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        elif isinstance(error, Busy):
            headers["Retry-After"] = str(error.retry_after_s)
        return Failure(error.status_code, error.message, headers)
    if isinstance(error, VALUE_UNSTORABLE):
        return Failure(422, UNSTORABLE_MESSAGE, {})
    if isinstance(error, DATABASE_UNAVAILABLE):
        return Failure(503, DATABASE_MESSAGE, RETRY_AFTER)
    if isinstance(error, FileNotFoundError):  # an artifact gone from the store
        return Failure(503, ARTIFACT_MESSAGE, {})
    return Failure(500, "internal error", {})

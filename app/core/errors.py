"""Domain errors that carry their HTTP status, rendered by one exception handler."""

from __future__ import annotations


class KilnError(Exception):
    """Base of every error a caller can act on; ``message`` is shown to the client verbatim."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(KilnError):
    """The request was well-formed but its content breaks a rule (422)."""

    status_code = 422


class RefusedBelow(InvalidInput):
    """A layer under the API (the artifact store, a file path) refused a value made from the
    client's input (422): no check at the boundary caught it first. Counted in /metrics
    (``kiln_refused_below_total``), since each one points at a missing boundary check."""

    layer = "unknown"


class BadRequest(KilnError):
    """The request could not be read at all (400)."""

    status_code = 400


class NotFound(KilnError):
    """The named resource does not exist (404)."""

    status_code = 404


class Conflict(KilnError):
    """The request conflicts with the current state (409)."""

    status_code = 409


class PayloadTooLarge(KilnError):
    """The body is over a configured limit (413)."""

    status_code = 413


class Unauthorized(KilnError):
    """No valid API key (401)."""

    status_code = 401


class Forbidden(KilnError):
    """The API key lacks the scope this route needs (403)."""

    status_code = 403


class Unavailable(KilnError):
    """The resource exists but cannot serve right now (503)."""

    status_code = 503


class Busy(Unavailable):
    """Full for now (a queue or a pool): the same request may succeed shortly (503, with a
    Retry-After of ``retry_after_s``)."""

    retry_after_s = 1


class StorageFull(KilnError):
    """The artifact store's disk is full (507): nothing was stored; free space and retry."""

    status_code = 507


class ArtifactCorrupt(Unavailable):
    """A stored artifact's bytes do not match the sha256 the registry recorded (503):
    it was changed or damaged after it was written, and is refused."""


class BrokenInvariant(RuntimeError):
    """Something the code itself guarantees did not hold: a bug, never the client's input,
    so it stays a 500. Raised explicitly where an ``assert`` would vanish under ``-O``."""

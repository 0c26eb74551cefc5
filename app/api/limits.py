"""Size limits at the app's edge: request headers (checked before the inference fast path
and FastAPI alike), and bodies, enforced while they stream in, before a handler sees them."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.contracts.traffic import ROUTE_KEY_HEADER
from app.core.config import Settings

# A multipart form here holds one file and a few short fields (the largest, a JSON list of
# columns or labels, is at most 100,000 characters): more parts than this is not an upload
# any client of ours sends, and each part costs the parser memory and a temp file.
MAX_FORM_FILES, MAX_FORM_FIELDS, MAX_FORM_FIELD_BYTES = 1, 16, 512 * 1024

# All of a request's header names and values together. uvicorn's httptools parser (what
# `kiln serve` runs) sets no bound of its own, so this is the one that answers.
MAX_HEADER_BYTES = 32 * 1024
# A route key only has to tell clients apart: it is hashed into one of 100 buckets.
MAX_ROUTE_KEY_CHARS = 256
_ROUTE_KEY = ROUTE_KEY_HEADER.encode()


def header_problem(headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    """(status, message) for a request whose headers break a limit, naming the header:
    431 past ``MAX_HEADER_BYTES`` in all, 400 for a route key past ``MAX_ROUTE_KEY_CHARS``;
    else None."""
    total = 0
    route_key = 0
    for name, value in headers:
        total += len(name) + len(value)
        if name == _ROUTE_KEY:
            route_key = len(value)
    if total > MAX_HEADER_BYTES:
        name, value = max(headers, key=lambda header: len(header[0]) + len(header[1]))
        return 431, (
            f"request headers take {total} bytes, over the limit of {MAX_HEADER_BYTES}; the "
            f"largest is {name.decode('latin-1')[:64]!r} ({len(name) + len(value)} bytes)"
        )
    if route_key > MAX_ROUTE_KEY_CHARS:
        return 400, (
            f"{ROUTE_KEY_HEADER}: at most {MAX_ROUTE_KEY_CHARS} characters, got {route_key}"
        )
    return None


# Routes that accept file uploads get the upload limit; every other body the request limit.
_UPLOAD_PATHS = re.compile(r"^/v1/(datasets|models/[^/]+/versions|jobs/predict)/?$")


class BodySizeLimit:
    """Answer 413 as soon as a body's declared or received size passes its limit."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.upload_limit = settings.max_upload_bytes
        self.request_limit = settings.max_request_bytes

    def _limit_for(self, path: str) -> tuple[int, str]:
        if _UPLOAD_PATHS.match(path):
            return self.upload_limit, "KILN_MAX_UPLOAD_MB"
        return self.request_limit, "KILN_MAX_REQUEST_MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit_for(scope["path"])
        message = (
            f"request body is larger than the limit of {limit} bytes "
            f"({limit / 1048576:g} MB, set by {setting})"
        )
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await error_response(scope["path"], 413, message)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            chunk = await receive()
            if chunk["type"] == "http.request":
                received += len(chunk.get("body", b""))
                if received > limit:
                    raise HTTPException(status_code=413, detail=message)
            return chunk

        await self.app(scope, limited_receive, send)

"""Body size limits enforced while the body streams in, before a handler sees it."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.core.config import Settings

# A multipart form here holds one file and a few short fields (the largest, a JSON list of
# columns or labels, is at most 100,000 characters): more parts than this is not an upload
# any client of ours sends, and each part costs the parser memory and a temp file.
MAX_FORM_FILES, MAX_FORM_FIELDS, MAX_FORM_FIELD_BYTES = 1, 16, 512 * 1024

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

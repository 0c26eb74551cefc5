"""Inference served straight from ASGI, ahead of FastAPI's middleware stack, routing and
dependency solving (which cost more than a small network's run): the gateway app hands
every path an HTTP codec matches (``app.serving.codecs.HTTP_CODECS``: ``/v1`` predict,
``/v2`` infer) here first (``app.main.Gateway``). Same key check, body limit, inference core
and error rendering as the documented routes; anything no codec matches (another route, an
unusual query string, a browser's cross-origin call when CORS is configured) goes on to
FastAPI unchanged."""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from app.api.inference import authorize
from app.api.state import GatewayState
from app.contracts.enums import Scope as KeyScope
from app.contracts.traffic import REQUEST_ID_HEADER, ROUTE_KEY_HEADER
from app.core.errors import BadRequest, PayloadTooLarge
from app.core.failures import failure_of
from app.serving.codecs import HTTP_CODECS
from app.serving.codecs.base import JSON, NO_META, Answer, HttpCodec, Payload, RequestMeta
from app.serving.request_log import valid_request_id

logger = logging.getLogger(__name__)

_LENGTH = b"content-length"
_AUTHORIZATION = b"authorization"
_HEADER_LENGTH = b"inference-header-content-length"
_ROUTE_KEY = ROUTE_KEY_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_ORIGIN = b"origin"

Route = tuple[HttpCodec[Any], str, int | None]  # codec, model name, version


class InferenceFastPath:
    """Recognises the inference routes of every HTTP codec and serves them (see the module
    docstring)."""

    def __init__(self, state: GatewayState, *, cors: bool) -> None:
        self.state = state
        self.core = state.core
        self.cors = cors  # browsers' cross-origin calls then go through CORSMiddleware
        self.limit: int = state.settings.max_request_bytes

    def route(self, scope: Scope) -> Route | None:
        """The codec and route of an inference request this path serves, else None."""
        if scope["method"] != "POST":
            return None
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        for codec in HTTP_CODECS:
            found = codec.match(path, query)
            if found is not None:
                if self.cors and any(name == _ORIGIN for name, _ in scope["headers"]):
                    return None
                return codec, found[0], found[1]
        return None

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request; every failure is rendered as the gateway renders it."""
        codec, name, version = route
        authorization = declared = header_length = route_key = request_id = None
        for key, value in scope["headers"]:
            if key == _AUTHORIZATION:
                authorization = value
            elif key == _LENGTH:
                declared = value
            elif key == _HEADER_LENGTH:
                header_length = value.decode("latin-1")
            elif key == _ROUTE_KEY:
                route_key = value.decode("latin-1")
            elif key == _REQUEST_ID:
                request_id = valid_request_id(value.decode("latin-1"))
        meta = (
            NO_META
            if route_key is None and request_id is None
            else RequestMeta(route_key, request_id)
        )
        try:
            await authorize(
                self.state.directory, (authorization or b"").decode("latin-1"), KeyScope.INFER
            )
            body = await read_body(receive, declared, self.limit)
            answer = await self.core.infer(
                codec, name, version, payload_of(body, header_length), meta
            )
        except Exception as error:
            failure = failure_of(error)
            if failure.status == 500:
                logger.exception("inference request failed")
            await respond(
                send,
                failure.status,
                Answer(
                    codec.error_body(failure.message),
                    {"content-type": JSON, **{k.lower(): v for k, v in failure.headers.items()}},
                ),
            )
            return
        await respond(send, 200, answer)


def payload_of(body: bytes, header_length: str | None) -> Payload:
    """An HTTP body as the core takes it: its JSON part is the header when the binary
    tensor extension splits it."""
    json_bytes = len(body)
    if header_length is not None and header_length.isascii() and header_length.isdigit():
        json_bytes = min(json_bytes, int(header_length))
    return Payload(body, len(body), json_bytes, header_length)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is larger than the limit of {limit} bytes "
        f"({limit / 1048576:g} MB, set by KILN_MAX_REQUEST_MB)"
    )


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body, refused as soon as its declared or received size passes ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and message["type"] == "http.request":
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        if size > limit:
            raise too_large(limit)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)


_JSON_ONLY = {"content-type": JSON}
_JSON_HEADER = (b"content-type", JSON.encode())


async def respond(send: Send, status: int, answer: Answer) -> None:
    if answer.headers == _JSON_ONLY:
        headers = [_JSON_HEADER]
    else:
        headers = [
            (key.encode("latin-1"), value.encode("latin-1"))
            for key, value in answer.headers.items()
        ]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})

"""Predict and infer served straight from ASGI, ahead of FastAPI's middleware stack, routing
and dependency solving (which cost more than a small MLP's run): the gateway app hands
these two routes here first (``app.main.Gateway``). Same key check, body limit, inference
path and error rendering as the documented routes; anything it does not recognise (another
route, an unusual query string, a browser's cross-origin call when CORS is configured)
goes on to FastAPI unchanged."""

from __future__ import annotations

import logging
import re

import orjson
from starlette.types import Receive, Scope, Send

from app.api.errors import failure_of
from app.api.inference import (
    JSON,
    NO_META,
    Answer,
    RequestMeta,
    authorize,
    infer_answer,
    predict_answer,
)
from app.api.state import GatewayState
from app.contracts.enums import Scope as KeyScope
from app.contracts.traffic import REQUEST_ID_HEADER, ROUTE_KEY_HEADER
from app.core.errors import BadRequest, PayloadTooLarge
from app.serving.request_log import valid_request_id

logger = logging.getLogger(__name__)

_PREDICT = re.compile(r"/v1/models/([^/]+)/predict")
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([1-9][0-9]{0,8}))?/infer")
_VERSION_QUERY = re.compile(rb"version=([1-9][0-9]{0,8})")
_LENGTH = b"content-length"
_AUTHORIZATION = b"authorization"
_HEADER_LENGTH = b"inference-header-content-length"
_ROUTE_KEY = ROUTE_KEY_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()

Route = tuple[str, str, int | None]  # protocol, model name, version


class InferenceFastPath:
    """Recognises the inference routes and serves them (see the module docstring)."""

    def __init__(self, state: GatewayState, *, cors: bool) -> None:
        self.state = state
        self.cors = cors  # browsers' cross-origin calls then go through CORSMiddleware
        self.limit: int = state.settings.max_request_bytes

    def route(self, scope: Scope) -> Route | None:
        """The route of an inference request this path serves, else None."""
        if scope["method"] != "POST":
            return None
        path: str = scope["path"]
        found: Route | None = None
        if path.startswith("/v1/"):
            match = _PREDICT.fullmatch(path)
            query: bytes = scope["query_string"]
            if match is None:
                return None
            if not query:
                found = "v1", match[1], None
            elif version := _VERSION_QUERY.fullmatch(query):
                found = "v1", match[1], int(version[1])
            else:  # anything else in the query goes to FastAPI, which explains it
                return None
        elif path.startswith("/v2/") and not scope["query_string"]:
            match = _INFER.fullmatch(path)
            if match is None:
                return None
            found = "v2", match[1], int(match[2]) if match[2] else None
        if (
            found is not None
            and self.cors
            and any(name == b"origin" for name, _ in scope["headers"])
        ):
            return None
        return found

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request; every failure is rendered as the gateway renders it."""
        protocol, name, version = route
        authorization = declared = header_length = route_key = request_id = None
        for key, value in scope["headers"]:
            if key == _AUTHORIZATION:
                authorization = value
            elif key == _LENGTH:
                declared = value
            elif key == _HEADER_LENGTH:
                header_length = value
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
            if protocol == "v1":
                answer = await predict_answer(self.state, name, version, body, meta)
            else:
                answer = await infer_answer(
                    self.state,
                    name,
                    version,
                    body,
                    None if header_length is None else header_length.decode("latin-1"),
                    meta,
                )
        except Exception as error:
            failure = failure_of(error)
            if failure.status == 500:
                logger.exception("inference request failed")
            key = "error" if protocol == "v2" else "detail"
            await respond(
                send,
                failure.status,
                Answer(
                    orjson.dumps({key: failure.message}),
                    {"content-type": JSON, **{k.lower(): v for k, v in failure.headers.items()}},
                ),
            )
            return
        await respond(send, 200, answer)


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

"""The inference hot path shared by ``/v1/models/{name}/predict`` and ``/v2/.../infer``.

``predict_answer`` and ``infer_answer`` do the work for the documented FastAPI routes.
``InferenceFastPath`` serves the same two routes straight from ASGI, before FastAPI's
routing and dependency machinery (which costs more than the model itself for small MLPs):
same code, same checks, same errors, less per-request overhead. Anything it does not
recognise (another route, an unusual query string) goes on to FastAPI unchanged."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import failure_of
from app.api.metrics import ServingMetrics
from app.auth import Principal, check_scope
from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge, Unauthorized
from app.serving.directory import ServingDirectory, Target
from app.serving.oip import HEADER_LENGTH, NAMES, InferRequest, decode, encode
from app.serving.predict import answer, parse_feeds
from app.serving.runtime import Feeds, LoadedModel
from app.tables import Scope as KeyScope

logger = logging.getLogger(__name__)

# Below these sizes, parsing and running the model on the event loop costs less than
# handing the request to a worker thread (tens of microseconds for small MLPs).
INLINE_ELEMENTS = 16_384
INLINE_BODY_BYTES = 64 * 1024

_T = TypeVar("_T")
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """A response body with its content type (and extra headers)."""

    body: bytes
    headers: dict[str, str]


async def find_target(directory: ServingDirectory, name: str, version: int | None) -> Target:
    """The version a request addresses (alias rules apply), loaded and warmed up."""
    target = directory.cached_target(name, version)
    if target is None:
        target = await run_in_threadpool(directory.target, name, version)
    return target


async def _parse(size: int, parse: Callable[[], _T]) -> _T:
    if size <= INLINE_BODY_BYTES:
        return parse()
    return await run_in_threadpool(parse)


async def run_model(target: Target, feeds: Feeds) -> np.ndarray:
    """The model's first output for ``feeds``: batched when the model has dynamic
    batching on, else inline when small or in a worker thread."""
    if target.batcher is not None:
        return await target.batcher.run(feeds)
    if sum(values.size for values in feeds.values()) <= INLINE_ELEMENTS:
        return target.model.run(feeds)
    return await run_in_threadpool(target.model.run, feeds)


def _count_failure(metrics: ServingMetrics, name: str, target: Target | None, protocol: str,
                   status: int) -> None:
    """A failed request, labelled by the version it resolved to. A name that resolved to
    nothing is not used as a label: callers could mint any number of them."""
    if target is None:
        metrics.failed("", None, protocol, status)
    else:
        metrics.failed(name, target.version, protocol, status)


async def handle_inference(state: State, protocol: str, name: str, version: int | None, size: int,
                  parse: Callable[[LoadedModel], tuple[_T, Feeds]],
                  render: Callable[[Target, _T, np.ndarray], Answer]) -> Answer:
    """Resolve, parse (``size`` bytes), run and render one request, with its metrics."""
    metrics: ServingMetrics = state.metrics
    arrived = time.perf_counter()
    target = None
    try:
        target = await find_target(state.directory, name, version)
        model = target.model
        started = time.perf_counter()
        parsed, feeds = await _parse(size, lambda: parse(model))
        computing = time.perf_counter()
        output = await run_model(target, feeds)
        computed = time.perf_counter()
        result = render(target, parsed, output)
    except Exception as error:  # counted by the status it is answered with, then raised
        _count_failure(metrics, name, target, protocol, failure_of(error).status)
        raise
    metrics.succeeded(name, target.version, protocol, queue_s=started - arrived,
                      compute_s=computed - computing)
    return result


async def predict_answer(state: State, name: str, version: int | None, body: bytes) -> Answer:
    """``/v1`` predict: JSON rows in, labels and probabilities (or values) out."""
    max_rows = state.settings.max_predict_rows

    def parse(model: LoadedModel) -> tuple[None, Feeds]:
        return None, parse_feeds(body, model, max_rows=max_rows)

    def render(target: Target, _: None, output: np.ndarray) -> Answer:
        result = {"model": name, "version": target.version, **answer(target.model, output)}
        return Answer(orjson.dumps(result), {"content-type": JSON})

    return await handle_inference(state, "v1", name, version, len(body), parse, render)


def _check_outputs(model: LoadedModel, request: InferRequest) -> None:
    wanted = request.outputs if request.outputs is not None else [model.output_name]
    unknown = sorted(set(wanted) - {model.output_name})
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; the model has ['{model.output_name}']")


def _column_feeds(model: LoadedModel, request: InferRequest, max_rows: int) -> Feeds:
    """The feeds of a model that takes columns: each an [n, 1] (or [n]) tensor, FP32 (or
    another number type) for numbers with NaN for gaps, BYTES for text and dates."""
    assert model.columns is not None
    columns = {column.name: column for column in model.columns}
    unknown = sorted(set(request.inputs) - set(columns))
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown[:10]}; the model takes "
                         f"{[name for name in columns][:30]}")
    feeds: Feeds = {}
    rows = None
    for name, column in columns.items():
        if not column.required:
            continue
        if name not in request.inputs:
            raise BadRequest(f"missing input '{name}'")
        array = request.inputs[name]
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 1):
            raise BadRequest(f"input '{name}' has shape {list(array.shape)}; the model "
                             f"expects [1 to {max_rows}, 1]")
        rows = len(array) if rows is None else rows
        if len(array) != rows or not 1 <= rows <= max_rows:
            raise BadRequest(f"input '{name}' has {len(array)} rows; every input needs the "
                             f"same number, 1 to {max_rows}")
        text = array.dtype == object
        if text != (column.datatype == "BYTES"):
            raise BadRequest(f"input '{name}' has datatype {NAMES[array.dtype]}; the model "
                             f"expects {column.datatype}")
        if not text:
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
            if np.isinf(array).any():
                raise BadRequest(f"input '{name}' contains Inf (or a value outside float32)")
        feeds[name] = array.reshape(-1, 1)
    return feeds


def _check_inputs(model: LoadedModel, request: InferRequest, max_rows: int) -> None:
    unknown = sorted(set(request.inputs) - {model.input_name})
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes ['{model.input_name}']")
    if model.input_name not in request.inputs:
        raise BadRequest(f"missing input '{model.input_name}'")
    array = request.inputs[model.input_name]
    datatype = NAMES[array.dtype]
    if datatype != model.input_datatype:
        raise BadRequest(f"input '{model.input_name}' has datatype {datatype}; the model "
                         f"expects {model.input_datatype}")
    if tuple(array.shape[1:]) != model.input_shape or not 1 <= array.shape[0] <= max_rows:
        raise BadRequest(f"input '{model.input_name}' has shape {list(array.shape)}; the model "
                         f"expects [1 to {max_rows}, {', '.join(map(str, model.input_shape))}]")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input '{model.input_name}' contains NaN or Inf")


def element_limit(settings: Settings, model: LoadedModel) -> int:
    """The most elements one input tensor of a request to ``model`` may declare."""
    return min(settings.max_tensor_elements, settings.max_predict_rows * model.n_features)


def infer_feeds(settings: Settings, model: LoadedModel, decoded: InferRequest) -> Feeds:
    """The feeds of a decoded Open Inference Protocol request, checked against the model."""
    _check_outputs(model, decoded)
    if model.columns is not None:
        return _column_feeds(model, decoded, settings.max_predict_rows)
    _check_inputs(model, decoded, settings.max_predict_rows)
    return {model.input_name: decoded.inputs[model.input_name]}


async def infer_answer(state: State, name: str, version: int | None, body: bytes,
                       header_length: str | None) -> Answer:
    """``/v2`` infer: tensors as JSON or with the binary tensor extension."""
    settings = state.settings

    def parse(model: LoadedModel) -> tuple[InferRequest, Feeds]:
        decoded = decode(body, header_length, max_elements=element_limit(settings, model))
        return decoded, infer_feeds(settings, model, decoded)

    def render(target: Target, decoded: InferRequest, output: np.ndarray) -> Answer:
        content, headers = encode(name, target.version, decoded,
                                  {target.model.output_name: output})
        return Answer(content, headers)

    return await handle_inference(state, "v2", name, version, len(body), parse, render)


_PREDICT = re.compile(r"/v1/models/([^/]+)/predict")
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([1-9][0-9]{0,8}))?/infer")
_VERSION_QUERY = re.compile(rb"version=([1-9][0-9]{0,8})")


class InferenceFastPath:
    """Serves predict and infer straight from ASGI (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        protocol, name, version = route
        headers = dict(scope["headers"])
        try:
            answer_ = await self._serve(protocol, name, version, headers, receive)
        except Exception as error:
            failure = failure_of(error)
            if failure.status == 500:
                logger.exception("inference request failed")
            key = "error" if protocol == "v2" else "detail"
            await _respond(send, failure.status, Answer(
                orjson.dumps({key: failure.message}),
                {"content-type": JSON, **{k.lower(): v for k, v in failure.headers.items()}}))
            return
        await _respond(send, 200, answer_)

    def _route(self, scope: Scope) -> tuple[str, str, int | None] | None:
        if scope["method"] != "POST":
            return None
        path: str = scope["path"]
        if path.startswith("/v1/"):
            match = _PREDICT.fullmatch(path)
            query: bytes = scope["query_string"]
            if match is None:
                return None
            if not query:
                return "v1", match[1], None
            version = _VERSION_QUERY.fullmatch(query)
            # Anything else in the query goes to FastAPI, which validates and explains it.
            return ("v1", match[1], int(version[1])) if version else None
        match = _INFER.fullmatch(path) if path.startswith("/v2/") else None
        if match is None or scope["query_string"]:
            return None
        return "v2", match[1], int(match[2]) if match[2] else None

    async def _serve(self, protocol: str, name: str, version: int | None,
                     headers: dict[bytes, bytes], receive: Receive) -> Answer:
        await self._authorize(headers.get(b"authorization"))
        body = await _read_body(receive, headers.get(b"content-length"),
                                self.state.settings.max_request_bytes)
        if protocol == "v1":
            return await predict_answer(self.state, name, version, body)
        length = headers.get(HEADER_LENGTH.encode())
        return await infer_answer(self.state, name, version, body,
                                  None if length is None else length.decode("latin-1"))

    async def _authorize(self, authorization: bytes | None) -> None:
        await authorize(self.state.directory, (authorization or b"").decode("latin-1"),
                        KeyScope.INFER)


async def authorize(directory: ServingDirectory, authorization: str,
                    scope: KeyScope | None) -> Principal:
    """The key of an ``Authorization: Bearer <key>`` value, checked (through the cache) for
    ``scope`` (None: any valid key)."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    secret = secret.strip()
    principal = directory.cached_principal(secret)
    if principal is None:
        principal = await run_in_threadpool(directory.authenticate, secret)
    if scope is not None:
        check_scope(principal, scope)
    return principal


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes "
                           f"({limit / 1048576:g} MB, set by KILN_MAX_REQUEST_MB)")


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body, refused as soon as its declared or received size passes ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, status: int, answer_: Answer) -> None:
    headers = [(key.encode("latin-1"), value.encode("latin-1"))
               for key, value in answer_.headers.items()]
    headers.append((b"content-length", str(len(answer_.body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer_.body})

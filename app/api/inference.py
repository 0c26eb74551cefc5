"""The inference path shared by ``/v1/models/{name}/predict``, ``/v2/.../infer`` and the
gRPC ``ModelInfer``: resolve the version, parse and check the request, run the model,
render the answer, count it. ``predict_answer`` and ``infer_answer`` serve both the
documented FastAPI routes and ``app.api.fast_path``, which reaches them straight from ASGI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.api.errors import failure_of
from app.api.metrics import ServingMetrics
from app.api.state import GatewayState
from app.auth import Principal, check_scope
from app.contracts.enums import Scope as KeyScope
from app.contracts.traffic import REQUEST_ID_HEADER, ROUTE_KEY_HEADER, VERSION_HEADER
from app.core.config import Settings
from app.core.errors import BadRequest, BrokenInvariant, Unauthorized
from app.serving.directory import ServingDirectory, Target
from app.serving.oip import NAMES, InferRequest, decode, encode
from app.serving.predict import answer, parse_feeds
from app.serving.request_log import valid_request_id
from app.serving.runtime import Feeds, LoadedModel

logger = logging.getLogger(__name__)

# Below these sizes, parsing and running the model on the event loop costs less than
# handing the request to a worker thread (tens of microseconds for small MLPs).
INLINE_ELEMENTS = 16_384
INLINE_JSON_BYTES = 64 * 1024  # binary tensors cost next to nothing to read, at any size

_T = TypeVar("_T")
_R = TypeVar("_R")
JSON = "application/json"


@dataclass(slots=True)
class Answer:
    """A response body with its content type (and extra headers)."""

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What a request's headers (or gRPC metadata) say about routing and logging: the key
    a split routes it by (the same key, the same version) and the client's request id."""

    route_key: str | None = None
    request_id: str | None = None


NO_META = RequestMeta()


def meta_of(request: Request) -> RequestMeta:
    """The routing key and request id of a request through FastAPI's routes."""
    return RequestMeta(
        request.headers.get(ROUTE_KEY_HEADER),
        valid_request_id(request.headers.get(REQUEST_ID_HEADER)),
    )


def answer_headers(target: Target, request_id: str | None) -> dict[str, str]:
    """The headers every answer carries: the version that answered (and the id a logged
    request was kept under)."""
    headers = {VERSION_HEADER: str(target.version)}
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def _count_failure(
    metrics: ServingMetrics, name: str, target: Target | None, protocol: str, status: int
) -> None:
    """A failed request, labelled by the version it resolved to. A name that resolved to
    nothing is not used as a label: callers could mint any number of them."""
    if target is None:
        metrics.failed("", None, protocol, status)
    else:
        metrics.failed(name, target.version, protocol, status)


def _answered(
    state: GatewayState,
    protocol: str,
    name: str,
    target: Target,
    parsed: _T,
    feeds: Feeds,
    output: np.ndarray,
    latency_s: float,
    render: Callable[[Target, _T, np.ndarray, dict[str, str]], _R],
    meta: RequestMeta,
) -> _R:
    """Hand an answered request to the monitors (never delaying or failing it) and render
    it with the headers every answer carries."""
    logged = state.monitors.observe(
        name=name,
        version=target.version,
        shadow=target.shadow,
        model=target.model,
        protocol=protocol,
        feeds=feeds,
        output=output,
        latency_s=latency_s,
        log_sample=target.log_sample,
        drift_threshold=target.drift_threshold,
        request_id=meta.request_id,
    )
    return render(target, parsed, output, answer_headers(target, logged or meta.request_id))


async def handle_inference(
    state: GatewayState,
    protocol: str,
    name: str,
    version: int | None,
    json_bytes: int,
    parse: Callable[[LoadedModel], tuple[_T, Feeds]],
    render: Callable[[Target, _T, np.ndarray, dict[str, str]], _R],
    meta: RequestMeta = NO_META,
) -> _R:
    """Resolve (a split routes by ``meta.route_key``), parse (``json_bytes`` of JSON in
    it), run and render one request, with its metrics; then hand it to the monitors (the
    shadow's copy, the request log, drift), which never delay or fail it. Small requests
    are parsed and run on the event loop (a thread hop costs more than they do); large
    ones, the first request to a version, and every run of a graph that came from an
    upload, in a worker thread."""
    metrics: ServingMetrics = state.metrics
    arrived = time.perf_counter()
    target = state.directory.cached_target(name, version, meta.route_key)
    try:
        if target is None:
            target = await run_in_threadpool(state.directory.target, name, version, meta.route_key)
        model = target.model
        started = time.perf_counter()
        if json_bytes <= INLINE_JSON_BYTES:
            parsed, feeds = parse(model)
        else:
            parsed, feeds = await run_in_threadpool(parse, model)
        computing = time.perf_counter()
        if target.batcher is not None:
            output = await target.batcher.run(feeds)
        elif model.guard is None and sum(values.size for values in feeds.values()) <= (
            INLINE_ELEMENTS
        ):
            output = model.run(feeds)
        else:
            output = await run_in_threadpool(model.run, feeds)
        computed = time.perf_counter()
        result = _answered(
            state, protocol, name, target, parsed, feeds, output, computed - arrived, render, meta
        )
    except Exception as error:  # counted by the status it is answered with, then raised
        _count_failure(metrics, name, target, protocol, failure_of(error).status)
        raise
    metrics.succeeded(
        name, target.version, protocol, queue_s=started - arrived, compute_s=computed - computing
    )
    return result


def infer_on_this_thread(
    state: GatewayState,
    loop: asyncio.AbstractEventLoop,
    protocol: str,
    name: str,
    version: int | None,
    parse: Callable[[LoadedModel], tuple[_T, Feeds]],
    render: Callable[[Target, _T, np.ndarray, dict[str, str]], _R],
    meta: RequestMeta = NO_META,
) -> _R:
    """``handle_inference`` for a caller with a thread of its own (the gRPC server's pool):
    every step blocks this thread, none the event loop; a model with dynamic batching
    still merges with the HTTP requests, in the batcher on ``loop``."""
    metrics: ServingMetrics = state.metrics
    arrived = time.perf_counter()
    target = None
    try:
        target = state.directory.cached_target(
            name, version, meta.route_key
        ) or state.directory.target(name, version, meta.route_key)
        started = time.perf_counter()
        parsed, feeds = parse(target.model)
        computing = time.perf_counter()
        if target.batcher is not None:
            output = asyncio.run_coroutine_threadsafe(target.batcher.run(feeds), loop).result()
        else:
            output = target.model.run(feeds)
        computed = time.perf_counter()
        result = _answered(
            state, protocol, name, target, parsed, feeds, output, computed - arrived, render, meta
        )
    except Exception as error:
        _count_failure(metrics, name, target, protocol, failure_of(error).status)
        raise
    metrics.succeeded(
        name, target.version, protocol, queue_s=started - arrived, compute_s=computed - computing
    )
    return result


async def predict_answer(
    state: GatewayState,
    name: str,
    version: int | None,
    body: bytes,
    meta: RequestMeta = NO_META,
) -> Answer:
    """``/v1`` predict: JSON rows in, labels and probabilities (or values) out."""
    max_rows = state.settings.max_predict_rows

    def parse(model: LoadedModel) -> tuple[None, Feeds]:
        return None, parse_feeds(body, model, max_rows=max_rows)

    def render(target: Target, _: None, output: np.ndarray, headers: dict[str, str]) -> Answer:
        result = {"model": name, "version": target.version, **answer(target.model, output)}
        return Answer(orjson.dumps(result), {"content-type": JSON, **headers})

    return await handle_inference(state, "v1", name, version, len(body), parse, render, meta)


def _check_outputs(model: LoadedModel, request: InferRequest) -> None:
    wanted = request.outputs if request.outputs is not None else [model.output_name]
    unknown = sorted(set(wanted) - {model.output_name})
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; the model has ['{model.output_name}']")


def _column_feeds(model: LoadedModel, request: InferRequest, max_rows: int) -> Feeds:
    """The feeds of a model that takes columns: each an [n, 1] (or [n]) tensor, FP32 (or
    another number type) for numbers with NaN for gaps, BYTES for text and dates."""
    if model.columns is None:
        raise BrokenInvariant("model.columns is None")
    columns = {column.name: column for column in model.columns}
    unknown = sorted(set(request.inputs) - set(columns))
    if unknown:
        raise BadRequest(
            f"unknown input(s) {unknown[:10]}; the model takes {[name for name in columns][:30]}"
        )
    feeds: Feeds = {}
    rows = None
    for name, column in columns.items():
        if not column.required:
            continue
        if name not in request.inputs:
            raise BadRequest(f"missing input '{name}'")
        array = request.inputs[name]
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 1):
            raise BadRequest(
                f"input '{name}' has shape {list(array.shape)}; the model "
                f"expects [1 to {max_rows}, 1]"
            )
        rows = len(array) if rows is None else rows
        if len(array) != rows or not 1 <= rows <= max_rows:
            raise BadRequest(
                f"input '{name}' has {len(array)} rows; every input needs the "
                f"same number, 1 to {max_rows}"
            )
        text = array.dtype == object
        if text != (column.datatype == "BYTES"):
            raise BadRequest(
                f"input '{name}' has datatype {NAMES[array.dtype]}; the model "
                f"expects {column.datatype}"
            )
        if not text:
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
            if np.isinf(array).any():
                raise BadRequest(f"input '{name}' contains Inf (or a value outside float32)")
        feeds[name] = array.reshape(-1, 1)
    return feeds


def _check_inputs(model: LoadedModel, request: InferRequest, gateway_rows: int) -> None:
    unknown = sorted(set(request.inputs) - {model.input_name})
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes ['{model.input_name}']")
    if model.input_name not in request.inputs:
        raise BadRequest(f"missing input '{model.input_name}'")
    array = request.inputs[model.input_name]
    datatype = NAMES[array.dtype]
    if datatype != model.input_datatype:
        raise BadRequest(
            f"input '{model.input_name}' has datatype {datatype}; the model "
            f"expects {model.input_datatype}"
        )
    max_rows = model.max_rows(gateway_rows)
    if tuple(array.shape[1:]) != model.input_shape or not 1 <= array.shape[0] <= max_rows:
        raise BadRequest(
            f"input '{model.input_name}' has shape {list(array.shape)}; the model "
            f"expects [1 to {max_rows}, {', '.join(map(str, model.input_shape))}]"
            f"{model.rows_note(gateway_rows) if array.shape[0] > max_rows else ''}"
        )
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


async def infer_answer(
    state: GatewayState,
    name: str,
    version: int | None,
    body: bytes,
    header_length: str | None,
    meta: RequestMeta = NO_META,
) -> Answer:
    """``/v2`` infer: tensors as JSON or with the binary tensor extension."""
    settings = state.settings

    def parse(model: LoadedModel) -> tuple[InferRequest, Feeds]:
        decoded = decode(body, header_length, max_elements=element_limit(settings, model))
        return decoded, infer_feeds(settings, model, decoded)

    def render(
        target: Target, decoded: InferRequest, output: np.ndarray, extra: dict[str, str]
    ) -> Answer:
        content, headers = encode(name, target.version, decoded, {target.model.output_name: output})
        return Answer(content, {**headers, **extra})

    json_bytes = len(body)
    if header_length is not None and header_length.isdigit():
        json_bytes = min(json_bytes, int(header_length))
    return await handle_inference(state, "v2", name, version, json_bytes, parse, render, meta)


def _bearer(authorization: str) -> str:
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return secret.strip()


def authorize_on_this_thread(
    directory: ServingDirectory, authorization: str, scope: KeyScope | None
) -> Principal:
    """``authorize`` for a caller with a thread of its own (blocking on a cache miss)."""
    secret = _bearer(authorization)
    principal = directory.cached_principal(secret) or directory.authenticate(secret)
    if scope is not None:
        check_scope(principal, scope)
    return principal


async def authorize(
    directory: ServingDirectory, authorization: str, scope: KeyScope | None
) -> Principal:
    """The key of an ``Authorization: Bearer <key>`` value, checked (through the cache) for
    ``scope`` (None: any valid key)."""
    secret = _bearer(authorization)
    principal = directory.cached_principal(secret)
    if principal is None:
        principal = await run_in_threadpool(directory.authenticate, secret)
    if scope is not None:
        check_scope(principal, scope)
    return principal

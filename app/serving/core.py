"""The inference core: decode -> route -> run -> encode, written once for every protocol.

A protocol is a codec (``app.serving.codecs``); the core resolves the version a request is
for (alias, split, version), decodes it with the codec against that model, runs the model
where its plan says (in this process, merged with the requests that reach their run in
the same turn of the event loop or by a model's dynamic batcher; or in its sandbox),
encodes the answer, counts it, and hands it to the monitors (the shadow's copy, the
request log, drift), which never delay or fail it.

Two entries share every step: ``infer`` for a caller on the event loop (HTTP), and
``infer_blocking`` for a caller with a thread of its own (the gRPC server's pool), which
blocks that thread and never the loop. Small requests are decoded and run on the event
loop, where a thread hop would cost more than they do; large ones, the first request to a
version, and every sandboxed run are off it."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.core.errors import BrokenInvariant
from app.core.failures import failure_of
from app.serving.codecs.base import Codec, Limits, Payload, RequestMeta
from app.serving.counters import ServingCounters
from app.serving.directory import ServingDirectory, Target, bucket_of
from app.serving.monitors import ServingMonitors
from app.serving.runtime import Feeds, rows_in

Parsed = TypeVar("Parsed")
Out = TypeVar("Out")

# Below these sizes, decoding and running the model on the event loop costs less than
# handing the request to a worker thread (tens of microseconds for small networks).
INLINE_ELEMENTS = 16_384
INLINE_JSON_BYTES = 64 * 1024  # binary tensors cost next to nothing to read, at any size


def _elements(feeds: Feeds) -> int:
    total = 0
    for values in feeds.values():
        total += values.size
    return total


class InferenceCore:
    """Every inference request of a gateway process, whatever its protocol (thread-safe)."""

    def __init__(
        self,
        directory: ServingDirectory,
        monitors: ServingMonitors,
        counters: ServingCounters,
        limits: Limits,
    ) -> None:
        self.directory = directory
        self.monitors = monitors
        self.counters = counters
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop | None = None  # where dynamic batchers run

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The gateway's event loop (set at start-up), for ``infer_blocking``'s batching."""
        self.loop = loop

    async def infer(
        self,
        codec: Codec[Parsed, Out],
        name: str,
        version: int | None,
        payload: Payload,
        meta: RequestMeta,
    ) -> Out:
        """Answer one request on the event loop (see the module docstring)."""
        arrived = time.perf_counter()
        # One draw per request: a split's version is the same whether the cache or the
        # registry answers (drawing again on a miss would starve a version not loaded yet).
        bucket = bucket_of(meta.route_key)
        target = self.directory.cached_target(name, version, bucket)
        try:
            if target is None:
                target = await run_in_threadpool(self.directory.target, name, version, bucket)
            model = target.model
            if payload.json_bytes <= INLINE_JSON_BYTES:
                parsed, feeds = codec.decode(payload, model, self.limits)
            else:
                parsed, feeds = await run_in_threadpool(codec.decode, payload, model, self.limits)
            started = time.perf_counter()
            if target.batcher is not None:
                output = await target.batcher.run(feeds)
            elif model.sandbox is not None:
                output = await model.run_async(feeds)
            elif _elements(feeds) > INLINE_ELEMENTS or (
                model.plan.inline_rows is not None and rows_in(feeds) > model.plan.inline_rows
            ):
                output = await run_in_threadpool(model.run, feeds)
            elif target.coalescer is not None:
                output = await target.coalescer.run(feeds)
            else:
                output = model.run(feeds)
            computed = time.perf_counter()
            answer = self._answer(codec, target, parsed, feeds, output, payload, meta, arrived)
        except Exception as error:  # counted by the status it is answered with, then raised
            self._failed(codec, name, target, error)
            raise
        self.counters.succeeded(
            name,
            target.version,
            codec.name,
            started - arrived,
            computed - started,
            time.perf_counter() - arrived,
        )
        return answer

    def infer_blocking(
        self,
        codec: Codec[Parsed, Out],
        name: str,
        version: int | None,
        payload: Payload,
        meta: RequestMeta,
    ) -> Out:
        """``infer`` for a caller with a thread of its own: every step blocks this thread,
        none the event loop; a model with dynamic batching still merges with the HTTP
        requests, in its batcher on the loop."""
        arrived = time.perf_counter()
        target = None
        try:
            bucket = bucket_of(meta.route_key)
            target = self.directory.cached_target(name, version, bucket) or self.directory.target(
                name, version, bucket
            )
            model = target.model
            parsed, feeds = codec.decode(payload, model, self.limits)
            started = time.perf_counter()
            if target.batcher is not None:
                if self.loop is None:
                    raise BrokenInvariant("dynamic batching needs the gateway's event loop")
                output = asyncio.run_coroutine_threadsafe(
                    target.batcher.run(feeds), self.loop
                ).result()
            else:
                output = model.run(feeds)
            computed = time.perf_counter()
            answer = self._answer(codec, target, parsed, feeds, output, payload, meta, arrived)
        except Exception as error:
            self._failed(codec, name, target, error)
            raise
        self.counters.succeeded(
            name,
            target.version,
            codec.name,
            started - arrived,
            computed - started,
            time.perf_counter() - arrived,
        )
        return answer

    def _answer(
        self,
        codec: Codec[Parsed, Out],
        target: Target,
        parsed: Parsed,
        feeds: Feeds,
        output: np.ndarray,
        payload: Payload,
        meta: RequestMeta,
        arrived: float,
    ) -> Out:
        """Hand an answered request to the monitors (never delaying or failing it) and
        encode it, naming the id it was logged under."""
        logged = self.monitors.observe(
            target, codec.name, feeds, output, payload.size, arrived, meta.request_id
        )
        return codec.encode(
            target.name, target.version, target.model, parsed, output, logged or meta.request_id
        )

    def _failed(
        self, codec: Codec[Parsed, Out], name: str, target: Target | None, error: Exception
    ) -> None:
        """A failed request, labelled by the version it resolved to. A name that resolved
        to nothing is not used as a label: callers could mint any number of them."""
        status = failure_of(error).status
        if target is None:
            self.counters.failed("", None, codec.name, status)
        else:
            self.counters.failed(name, target.version, codec.name, status)

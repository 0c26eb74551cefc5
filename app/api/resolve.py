"""The hot path shared by /v1 predict and /v2 infer: find the target version without a
database round trip when it was resolved a moment ago, and run the model on or off the
event loop depending on how much work the request carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.serving.directory import ServingDirectory, Target

# Below this many input values, parsing and running the model on the event loop costs less
# than handing the request to a worker thread (a few tens of microseconds for small MLPs).
INLINE_ELEMENTS = 16_384
INLINE_BODY_BYTES = 64 * 1024

_T = TypeVar("_T")


async def find_target(directory: ServingDirectory, name: str, version: int | None) -> Target:
    """The version a request addresses (alias rules apply), loaded and warmed up."""
    target = directory.cached_target(name, version)
    if target is None:
        target = await run_in_threadpool(directory.target, name, version)
    return target


async def parse_body(size: int, parse: Callable[[], _T]) -> _T:
    """Run a body parser inline for small bodies, in a worker thread for large ones."""
    if size <= INLINE_BODY_BYTES:
        return parse()
    return await run_in_threadpool(parse)


async def run_model(target: Target, rows: np.ndarray) -> np.ndarray:
    """The model's first output for ``rows`` (shape ``(n, ...)``): batched when the model
    has dynamic batching on, else run inline when small or in a worker thread."""
    if target.batcher is not None:
        return await target.batcher.run(rows)
    flat = rows.reshape(len(rows), -1)
    if rows.size <= INLINE_ELEMENTS:
        return target.model.run(flat)
    return await run_in_threadpool(target.model.run, flat)

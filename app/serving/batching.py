"""Dynamic batching: concurrent requests for one model merged into one onnxruntime call.

Off by default; a model turns it on with ``max_batch_size`` and ``max_queue_delay_ms``. A
request waits at most the delay for company; a batch runs as soon as it holds
``max_batch_size`` rows. Requests larger than the batch run on their own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from app.serving.runtime import Feeds, LoadedModel, rows_in


class StoredServingOptions(BaseModel):
    """A model's serving options as stored (``models.serving``, as ``PUT
    /v1/models/{name}/serving`` set them): batching, the log share, the drift threshold."""

    max_batch_size: int | None = None
    max_queue_delay_ms: float = 0.0
    log_sample: float | None = None
    drift_threshold: float | None = None


@dataclass(frozen=True)
class BatchPolicy:
    """How one model's requests are merged."""

    max_batch_size: int
    max_queue_delay_ms: float

    @classmethod
    def from_options(cls, options: StoredServingOptions) -> BatchPolicy | None:
        """The policy a model's options set, or None when batching is off."""
        if not options.max_batch_size:
            return None
        return cls(options.max_batch_size, options.max_queue_delay_ms)


_Waiting = tuple[Feeds, "asyncio.Future[np.ndarray]"]


def merged(waiting: list[_Waiting]) -> Feeds:
    """Every waiting request's rows, one array per input."""
    if len(waiting) == 1:
        return waiting[0][0]
    return {name: np.concatenate([feeds[name] for feeds, _ in waiting]) for name in waiting[0][0]}


class DynamicBatcher:
    """Collects rows on the event loop and runs each merged batch in a worker thread."""

    def __init__(
        self, model: LoadedModel, policy: BatchPolicy, *, inline_elements: int = 16_384
    ) -> None:
        self.model = model
        self.policy = policy
        # Smaller batches run on the loop itself, a sandboxed graph's in its sandbox; a
        # bounded upload's merged batches hold no more rows than one of its requests may.
        self.inline_elements = inline_elements
        self.batch_rows = model.max_rows(policy.max_batch_size)
        self._waiting: list[_Waiting] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self.batches_run = 0  # merged onnxruntime calls so far (reported by the benchmark)

    async def run(self, feeds: Feeds) -> np.ndarray:
        """The model's output for ``feeds`` (every input with its rows first), computed in
        some batch."""
        count = rows_in(feeds)
        if count >= self.batch_rows:
            return await self._compute(feeds)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if self._rows + count > self.batch_rows or (
            self._waiting and set(self._waiting[0][0]) != set(feeds)
        ):
            self._flush()
        self._waiting.append((feeds, future))
        self._rows += count
        if self._rows >= self.batch_rows:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.policy.max_queue_delay_ms / 1000, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._rows = self._waiting, [], 0
        if waiting:
            asyncio.get_running_loop().create_task(self._execute(waiting))

    async def _compute(self, feeds: Feeds) -> np.ndarray:
        if self.model.sandbox is not None:
            return await self.model.run_async(feeds)
        if sum(values.size for values in feeds.values()) <= self.inline_elements:
            return self.model.run(feeds)
        return await asyncio.to_thread(self.model.run, feeds)

    async def _execute(self, waiting: list[_Waiting]) -> None:
        self.batches_run += 1
        try:
            output = await self._compute(merged(waiting))
        except Exception as error:
            if len(waiting) == 1:
                if not waiting[0][1].done():
                    waiting[0][1].set_exception(error)
                return
            # One request's rows may be at fault: each runs alone, so each gets its own
            # answer or its own error, never another client's.
            for feeds, future in waiting:
                try:
                    alone = await self._compute(feeds)
                except Exception as own:
                    if not future.done():
                        future.set_exception(own)
                else:
                    if not future.done():
                        future.set_result(alone)
            return
        start = 0
        for feeds, future in waiting:
            count = rows_in(feeds)
            if not future.done():
                future.set_result(output[start : start + count])
            start += count

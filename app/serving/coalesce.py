"""Requests for one model that reach their run in the same turn of the event loop run as one
onnxruntime call, without waiting for anyone.

Under concurrent load, uvicorn reads several requests in one turn of the loop and their
tasks run back to back; each would call onnxruntime for one row, and a small network's
call costs far more in fixed overhead than in rows. Here the first request of a turn
yields once (``asyncio.sleep(0)``), so the requests already started in that turn join it,
then runs everyone's rows in one call and hands each its slice. Nobody waits for a request
that has not arrived: a lone request pays one turn of the loop (a few microseconds). If the
merged run fails, each request runs alone, so each gets its own answer or its own error.

Only graphs known to answer each row from that row alone merge: those ModelKiln exported,
and bounded uploads whose classification proved it (``app.onnx_graphs.row_independence``).
Another upload may mix rows (a bounded graph may subtract the batch's mean), so its
requests run alone, and a sandboxed graph's each in its sandbox; a model with dynamic
batching configured by its owner uses its batcher (``app.serving.batching``) instead."""

from __future__ import annotations

import asyncio

import numpy as np

from app.serving.runtime import Feeds, LoadedModel, rows_in

MAX_MERGED_ELEMENTS = 16_384  # what the event loop runs inline (``app.serving.core``)


class Coalescer:
    """One model's same-turn merging (used on the event loop only)."""

    def __init__(self, model: LoadedModel, max_rows: int) -> None:
        self.model = model
        self.max_rows = max_rows  # the most rows one merged call holds (the model's cap)
        self._waiting: list[tuple[Feeds, asyncio.Future[np.ndarray]]] | None = None
        self._rows = 0
        self._elements = 0
        self.merged_calls = 0  # calls that served more than one request (for the benchmark)

    async def run(self, feeds: Feeds) -> np.ndarray:
        """The model's output for ``feeds``, computed alone or with the turn's others."""
        waiting = self._waiting
        if waiting is not None:
            rows = rows_in(feeds)
            elements = sum(values.size for values in feeds.values())
            if (
                self._rows + rows <= self.max_rows
                and self._elements + elements <= MAX_MERGED_ELEMENTS
                and feeds.keys() == waiting[0][0].keys()
            ):
                future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
                waiting.append((feeds, future))
                self._rows += rows
                self._elements += elements
                return await future
            return self.model.run(feeds)  # no room in this turn's call: run alone
        return await self._lead(feeds)

    async def _lead(self, feeds: Feeds) -> np.ndarray:
        """Open the turn's call, let the turn's other requests join, run everyone's rows."""
        leader: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        waiting = [(feeds, leader)]
        self._waiting = waiting
        self._rows = rows_in(feeds)
        self._elements = sum(values.size for values in feeds.values())
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled: those who joined still get their answers
            self._waiting = None
            if len(waiting) > 1:
                self._run_merged(waiting[1:])
            raise
        self._waiting = None
        if len(waiting) == 1:
            return self.model.run(feeds)
        self._run_merged(waiting)
        return leader.result()

    def _run_merged(self, waiting: list[tuple[Feeds, asyncio.Future[np.ndarray]]]) -> None:
        names = waiting[0][0].keys()
        try:
            output = self.model.run(
                {name: np.concatenate([one[name] for one, _ in waiting]) for name in names}
            )
        except Exception:  # one request's rows may be at fault: each runs alone instead
            for one, future in waiting:
                if future.done():  # its request was cancelled meanwhile
                    continue
                try:
                    future.set_result(self.model.run(one))
                except Exception as error:
                    future.set_exception(error)
            return
        self.merged_calls += 1
        start = 0
        for one, future in waiting:
            count = rows_in(one)
            if not future.done():
                future.set_result(output[start : start + count])
            start += count

"""Shadow traffic: a copy of each request the serving alias routes goes to its shadow
version, off the response path, and the two answers are compared.

The request path only puts a reference to the request on the monitors' queue, which is
bounded in bytes (``app.serving.observations``): a full queue drops the copy and counts it.
The monitors' thread hands the copies it takes to the shadow's own thread (``submit``), so
a slow shadow never holds up the request log or drift; the copies it holds stay counted in
the queue's bytes, up to half of them (more are dropped and counted). The copies waiting
together run as one onnxruntime call of their rows (what a copy costs falls as traffic
grows; an upload's copies each alone: it may mix rows), a sandboxed shadow in its own
sandbox. Counts accumulate in memory and ``take`` hands them to the flush that adds them to
the registry's totals. Stopping drops the copies still waiting (counted), never waits for
them to run."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.contracts.enums import Task
from app.serving.observations import Observation
from app.serving.runtime import Feeds, LoadedModel

logger = logging.getLogger(__name__)

REGRESSION_AGREEMENT = 0.05  # regression: values within 5% of each other agree
SHADOW_BATCH_ROWS = 256  # copies waiting together run as one call of at most this many rows

Key = tuple[str, int, int]  # model, the version that answered, the shadow version


@dataclass
class Tally:
    """Counts since the last flush."""

    requests: int = 0
    rows: int = 0
    agreed: int = 0
    abs_diff_sum: float = 0.0
    dropped: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "rows": self.rows,
            "agreed": self.agreed,
            "abs_diff_sum": self.abs_diff_sum,
            "dropped": self.dropped,
            "failures": self.failures,
        }


def compare(task: str, answered: np.ndarray, shadow: np.ndarray) -> tuple[int, int, float]:
    """(rows, rows that agree, sum over rows of the mean absolute difference). A classifier
    agrees on a row when both pick the same class; a regressor when the values are within
    ``REGRESSION_AGREEMENT`` of the larger one."""
    a = np.asarray(answered, dtype=np.float64).reshape(len(answered), -1)
    b = np.asarray(shadow, dtype=np.float64).reshape(len(shadow), -1)
    if a.shape != b.shape:
        raise ValueError(f"the shadow answered shape {list(b.shape)}, not {list(a.shape)}")
    difference = np.abs(a - b).mean(axis=1)
    if task == Task.CLASSIFICATION and a.shape[1] > 1:
        agreed = int(np.sum(a.argmax(axis=1) == b.argmax(axis=1)))
    else:
        scale = np.maximum(np.maximum(np.abs(a[:, 0]), np.abs(b[:, 0])), 1e-12)
        agreed = int(np.sum(np.abs(a[:, 0] - b[:, 0]) <= REGRESSION_AGREEMENT * scale))
    return len(a), agreed, float(difference.sum())


def feeds_for(model: LoadedModel, feeds: Feeds) -> Feeds:
    """The request's feeds as the shadow takes them (a model that reads fewer columns
    gets only those); KeyError naming a column the request did not carry."""
    if model.columns is None:
        return feeds
    return {column.name: feeds[column.name] for column in model.columns if column.required}


class ShadowRunner:
    """Runs the shadow copies handed to it on a thread of its own (see the module
    docstring), grouped by (model, the version that answered, the shadow) and merged into
    calls of at most ``SHADOW_BATCH_ROWS`` rows, and keeps the tallies (thread-safe): the
    shadow's slowness or failure never reaches a client, nor the other watchers. A copy
    with more rows than the shadow may take (a bounded upload's cap) is refused and counted
    as a failure, never run."""

    def __init__(
        self,
        resolve: Callable[[str, int], LoadedModel],
        max_rows: int,
        *,
        release: Callable[[list[Observation]], None] = lambda items: None,
        max_bytes: int = 1 << 62,
        on_run: Callable[[str, int, int, int, float], None] = lambda *counts: None,
    ) -> None:
        self.resolve = resolve  # (model, version) -> loaded, blocking
        self.max_rows = max_rows  # the gateway's limit (a model may take fewer)
        self.release = release  # frees the bytes of copies it is done with (the queue's)
        self.max_bytes = max_bytes  # what the copies it holds may take
        # (model, shadow version, copies run, copies failed, seconds the run took): the
        # per-second counters the serving page draws the shadow from.
        self.on_run = on_run
        self._tallies: dict[Key, Tally] = {}
        self._lock = threading.Lock()
        self._pending: deque[Observation] = deque()
        self._held = 0  # bytes of the copies waiting or running
        self._wake = threading.Event()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None

    # -- its thread ---------------------------------------------------------------------
    def submit(self, items: list[Observation]) -> list[Observation]:
        """Hand copies to the shadow's thread; those it takes it releases when it is done.
        Returns the ones it took."""
        taken: list[Observation] = []
        with self._lock:
            for item in items:
                if self._stopping or self._held + item.size > self.max_bytes:
                    if item.shadow is not None:
                        self._tally((item.name, item.version, item.shadow)).dropped += 1
                    continue
                self._held += item.size
                self._pending.append(item)
                taken.append(item)
            if taken and self._thread is None:
                self._thread = threading.Thread(target=self._work, name="kiln-shadow", daemon=True)
                self._thread.start()
        if taken:
            self._wake.set()
        return taken

    def _work(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._busy = bool(batch)
            if not batch:
                continue
            try:
                self.run(batch)
            except Exception:
                logger.exception("the shadow's thread failed on %d copies", len(batch))
            finally:
                with self._lock:
                    self._held -= sum(item.size for item in batch)
                    self._busy = False
                self.release(batch)

    def idle(self) -> bool:
        """Whether no copy waits or runs."""
        with self._lock:
            return not self._pending and not self._busy

    def stop(self, timeout_s: float) -> None:
        """Drop the copies still waiting (counted, released) and wait up to ``timeout_s``
        for the one running, if any, to end."""
        with self._lock:
            self._stopping = True
            dropped = list(self._pending)
            self._pending.clear()
            for item in dropped:
                if item.shadow is not None:
                    self._tally((item.name, item.version, item.shadow)).dropped += 1
                self._held -= item.size
        self.release(dropped)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _tally(self, key: Key) -> Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies.setdefault(key, Tally())
        return tally

    def dropped(self, name: str, version: int, shadow: int) -> None:
        """A copy that found no room (the monitors' queue was full)."""
        with self._lock:
            self._tally((name, version, shadow)).dropped += 1

    def run(self, observations: list[Observation]) -> None:
        """Run every observation's shadow copy (those without a shadow are skipped)."""
        groups: dict[Key, list[Observation]] = {}
        for item in observations:
            if item.shadow is not None:
                groups.setdefault((item.name, item.version, item.shadow), []).append(item)
        for key, group in groups.items():
            batch: list[Observation] = []
            rows = 0
            for item in group:
                if batch and rows + item.rows > SHADOW_BATCH_ROWS:
                    self._run(key, batch)
                    batch, rows = [], 0
                batch.append(item)
                rows += item.rows
            if batch:
                self._run(key, batch)

    def _run(self, key: Key, copies: list[Observation]) -> None:
        name, _, shadow = key
        try:
            model = self.resolve(name, shadow)
            limit = model.max_rows(self.max_rows)
            refused = [copy for copy in copies if copy.rows > limit]
            if refused:
                logger.warning(
                    "shadow v%s of %r refused %d copies of more than %d rows%s",
                    shadow,
                    name,
                    len(refused),
                    limit,
                    model.rows_note(self.max_rows),
                )
                with self._lock:
                    tally = self._tally(key)
                    tally.requests += len(refused)
                    tally.failures += len(refused)
                self.on_run(name, shadow, 0, len(refused), 0.0)
                copies = [copy for copy in copies if copy.rows <= limit]
                if not copies:
                    return
            plan = getattr(model, "plan", None)
            if plan is not None and not plan.rows_independent and len(copies) > 1:
                # An upload may mix rows: merged copies would skew each other's answers.
                for copy in copies:
                    self._run(key, [copy])
                return
            taken = [feeds_for(model, copy.feeds) for copy in copies]
            feeds = (
                taken[0]
                if len(taken) == 1
                else {column: np.concatenate([one[column] for one in taken]) for column in taken[0]}
            )
            started = time.perf_counter()
            output = model.run(feeds)
            took = time.perf_counter() - started
            answered = np.concatenate([np.asarray(copy.output) for copy in copies])
            rows, agreed, difference = compare(model.task, answered, output)
        except Exception as error:  # the shadow's problem, counted; the client never sees it
            logger.warning("shadow v%s of %r failed: %s", shadow, name, error)
            with self._lock:
                tally = self._tally(key)
                tally.requests += len(copies)
                tally.failures += len(copies)
            self.on_run(name, shadow, 0, len(copies), 0.0)
            return
        with self._lock:
            tally = self._tally(key)
            tally.requests += len(copies)
            tally.rows += rows
            tally.agreed += agreed
            tally.abs_diff_sum += difference
        self.on_run(name, shadow, len(copies), 0, took)

    def take(self) -> dict[Key, Tally]:
        """The counts since the last call (and start afresh)."""
        with self._lock:
            taken, self._tallies = self._tallies, {}
        return taken

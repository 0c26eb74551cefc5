"""Shadow traffic: a copy of each request the serving alias routes goes to its shadow
version, off the response path, and the two answers are compared.

The request path only appends (feeds, the answer it already sent) to a bounded queue and
returns: a full queue drops the copy and counts it. One thread per gateway process runs
the shadow; its slowness or failure never reaches a client. The copies waiting when it
looks run together, as one onnxruntime call of their rows (what a copy costs falls as
traffic grows). Counts accumulate in memory and ``take`` hands them to the flusher that
adds them to the registry's totals."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.contracts.enums import Task
from app.serving.runtime import Feeds, LoadedModel

logger = logging.getLogger(__name__)

REGRESSION_AGREEMENT = 0.05  # regression: values within 5% of each other agree
SHADOW_BATCH_ROWS = 256  # copies waiting together run as one call of at most this many rows
SHADOW_TICK_S = 0.005  # how often the shadow's thread looks for copies

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


@dataclass(slots=True)
class _Copy:
    name: str
    version: int
    shadow: int
    feeds: Feeds
    answered: np.ndarray


@dataclass
class ShadowRunner:
    """The bounded queue, the thread that empties it, and the tallies (thread-safe).

    The queue is a deque the request path appends to without a lock or a wake-up; the
    thread looks every ``SHADOW_TICK_S`` and runs what waits, so at any traffic the request
    path pays one append, never a thread switch."""

    resolve: Callable[[str, int], LoadedModel]  # (model, version) -> loaded, blocking
    capacity: int
    _queue: collections.deque[_Copy] = field(default_factory=collections.deque, init=False)
    _tallies: dict[Key, Tally] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _busy: bool = field(default=False, init=False)

    def _tally(self, key: Key) -> Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies.setdefault(key, Tally())
        return tally

    def offer(
        self, name: str, version: int, shadow: int, feeds: Feeds, answered: np.ndarray
    ) -> None:
        """Queue a copy of an answered request for the shadow; never blocks."""
        if self._thread is None:
            self._start()
        if len(self._queue) >= self.capacity:
            with self._lock:
                self._tally((name, version, shadow)).dropped += 1
            return
        self._queue.append(_Copy(name, version, shadow, feeds, answered))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="kiln-shadow", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while not self._stop.wait(SHADOW_TICK_S):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        """Run every copy waiting now, a batch of rows at a time."""
        while self._queue:
            self._busy = True
            copies: list[_Copy] = []
            rows = 0
            while self._queue and rows < SHADOW_BATCH_ROWS:
                copy = self._queue.popleft()
                copies.append(copy)
                rows += len(copy.answered)
            groups: dict[Key, list[_Copy]] = {}
            for copy in copies:
                groups.setdefault((copy.name, copy.version, copy.shadow), []).append(copy)
            for key, group in groups.items():
                self._run(key, group)
        self._busy = False

    def _run(self, key: Key, copies: list[_Copy]) -> None:
        name, _, shadow = key
        try:
            model = self.resolve(name, shadow)
            taken = [feeds_for(model, copy.feeds) for copy in copies]
            feeds = {column: np.concatenate([one[column] for one in taken]) for column in taken[0]}
            output = model.run(feeds)
            answered = np.concatenate([np.asarray(copy.answered) for copy in copies])
            rows, agreed, difference = compare(model.task, answered, output)
        except Exception as error:  # the shadow's problem, counted; the client never sees it
            logger.warning("shadow v%s of %r failed: %s", shadow, name, error)
            with self._lock:
                tally = self._tally(key)
                tally.requests += len(copies)
                tally.failures += len(copies)
            return
        with self._lock:
            tally = self._tally(key)
            tally.requests += len(copies)
            tally.rows += rows
            tally.agreed += agreed
            tally.abs_diff_sum += difference

    def take(self) -> dict[Key, Tally]:
        """The counts since the last call (and start afresh)."""
        with self._lock:
            taken, self._tallies = self._tallies, {}
        return taken

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued copy has run (tests, shutdown); whether it did."""
        deadline = time.monotonic() + timeout_s
        while self._queue or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

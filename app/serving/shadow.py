"""Shadow traffic: a copy of each request the serving alias routes goes to its shadow
version, off the response path, and the two answers are compared.

The request path only puts a reference to the request on the monitors' queue, which is
bounded in bytes (``app.serving.observations``): a full queue drops the copy and counts it.
The monitors' thread hands the copies it takes to ``ShadowRunner.run``; the copies waiting
together run as one onnxruntime call of their rows (what a copy costs falls as traffic
grows), a sandboxed shadow in its own sandbox. Counts accumulate in memory and ``take``
hands them to the flush that adds them to the registry's totals."""

from __future__ import annotations

import logging
import threading
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
    """Runs the shadow copies of the observations it is given, grouped by (model, the
    version that answered, the shadow) and merged into calls of at most
    ``SHADOW_BATCH_ROWS`` rows, and keeps the tallies (thread-safe). Its caller is the
    monitors' thread, off the request path: the shadow's slowness or failure
    never reaches a client. A copy with more rows than the shadow may take (a bounded
    upload's cap) is refused and counted as a failure, never run."""

    def __init__(self, resolve: Callable[[str, int], LoadedModel], max_rows: int) -> None:
        self.resolve = resolve  # (model, version) -> loaded, blocking
        self.max_rows = max_rows  # the gateway's limit (a model may take fewer)
        self._tallies: dict[Key, Tally] = {}
        self._lock = threading.Lock()

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
                copies = [copy for copy in copies if copy.rows <= limit]
                if not copies:
                    return
            taken = [feeds_for(model, copy.feeds) for copy in copies]
            feeds = (
                taken[0]
                if len(taken) == 1
                else {column: np.concatenate([one[column] for one in taken]) for column in taken[0]}
            )
            output = model.run(feeds)
            answered = np.concatenate([np.asarray(copy.output) for copy in copies])
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

"""The gateway's own per-second counters: requests by outcome and a latency histogram per
(model, version, role) for each of the last ``KEPT_S`` seconds, in a fixed ring, so the
serving page and ``GET /v1/models/{name}/serving/stats`` draw rates, error rates and
percentiles over time with no external service.

On the request path a request costs a constant few operations, under the lock
``ServingCounters`` already takes: the slot of the current second (zeroed the first time a
second is seen, once per series and second), one integer increment of its outcome and one
of its latency bucket. Nothing is allocated per request: each series' cells are one
preallocated array. Latencies fall into fixed log-spaced buckets (four per doubling, 10 us
to about 70 s), so percentiles are computed when read, within about 9% of the truth.

A series whose newest second is older than the ring is dropped when a new one starts, so
memory follows the versions that served in the last ``SLOTS`` seconds (``RING_BYTES``
each)."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

KEPT_S = 900  # complete seconds kept: the last 15 minutes
SLOTS = KEPT_S + 1  # a slot a second, and one for the second still counting
STEPS_PER_DOUBLING = 4
BOUNDS = tuple(1e-5 * 2 ** (step / STEPS_PER_DOUBLING) for step in range(92))  # 10 us .. 70 s
OK, CLIENT_ERROR, SERVER_ERROR = 0, 1, 2  # the outcome cells, first in a slot
LATENCY = 3  # where a slot's latency buckets start (the last one past every bound)
WIDTH = LATENCY + len(BOUNDS) + 1
RING_BYTES = SLOTS * (WIDTH * 4 + 8)

ANSWERED, SHADOW = 0, 1  # roles: the requests a version answered, or its shadow copies
RingKey = tuple[str, int, int]  # model, version (0: resolved to none), role

_ZERO_SLOT = array("I", bytes(4 * WIDTH))


class _Ring:
    """One series: ``SLOTS`` slots of ``WIDTH`` counts, the second each slot holds, and
    where the second being counted starts (so most requests skip the slot arithmetic)."""

    __slots__ = ("base", "cells", "newest", "second", "stamps")

    def __init__(self) -> None:
        self.cells = array("I", bytes(4 * SLOTS * WIDTH))
        self.stamps = array("q", bytes(8 * SLOTS))  # 0: never used
        self.newest = 0
        self.second = -1  # the second ``base`` is the slot of
        self.base = 0

    def turn(self, second: int) -> None:
        """Count in ``second``'s slot from now on, zeroed if it held an older second (once
        per series and second)."""
        index = second % SLOTS
        base = index * WIDTH
        if self.stamps[index] != second:
            self.cells[base : base + WIDTH] = _ZERO_SLOT
            self.stamps[index] = second
        self.newest = max(self.newest, second)
        self.second = second
        self.base = base


@dataclass(frozen=True)
class RingCopy:
    """A series as it was when copied: ``cells`` (SLOTS x WIDTH) and ``stamps`` (SLOTS)."""

    cells: np.ndarray
    stamps: np.ndarray

    def window(self, since: int, seconds: int) -> np.ndarray:
        """The counts of seconds ``since`` .. ``since + seconds - 1`` (seconds x WIDTH);
        zeros where the ring holds another second."""
        wanted = np.arange(since, since + seconds, dtype=np.int64)
        slots = wanted % SLOTS
        held = self.stamps[slots] == wanted
        out = np.zeros((seconds, WIDTH), dtype=np.int64)
        out[held] = self.cells[slots[held]]
        return out


class SecondsRing:
    """Every series' ring. Not locked: its owner (``ServingCounters``) calls it under its
    own lock."""

    def __init__(self) -> None:
        self._rings: dict[RingKey, _Ring] = {}

    def _ring(self, key: RingKey, second: int) -> _Ring:
        ring = self._rings.get(key)
        if ring is None:
            # A new series is rare (a version's first request in SLOTS seconds): the time to
            # forget those with nothing left in the ring.
            for old in [k for k, r in self._rings.items() if r.newest <= second - SLOTS]:
                del self._rings[old]
            ring = self._rings[key] = _Ring()
        return ring

    def add(self, key: RingKey, second: int, outcome: int, latency_s: float | None) -> None:
        """One request of ``key`` in ``second``: its outcome and, when it was answered,
        its latency."""
        ring = self._rings.get(key)
        if ring is None:
            ring = self._ring(key, second)
        if ring.second != second:
            ring.turn(second)
        cells = ring.cells
        cells[ring.base + outcome] += 1
        if latency_s is not None:
            cells[ring.base + LATENCY + bisect_left(BOUNDS, latency_s)] += 1

    def add_many(self, key: RingKey, second: int, ok: int, failed: int, latency_s: float) -> None:
        """``ok`` runs that each took ``latency_s`` and ``failed`` that failed (a shadow's
        copies, run together)."""
        ring = self._rings.get(key)
        if ring is None:
            ring = self._ring(key, second)
        if ring.second != second:
            ring.turn(second)
        cells = ring.cells
        cells[ring.base + OK] += ok
        cells[ring.base + SERVER_ERROR] += failed
        if ok:
            cells[ring.base + LATENCY + bisect_left(BOUNDS, latency_s)] += ok

    def copy(self, model: str | None = None) -> dict[RingKey, RingCopy]:
        """A copy of the series of ``model`` (all: None)."""
        return {
            key: RingCopy(
                np.frombuffer(bytes(ring.cells), dtype=np.uint32).reshape(SLOTS, WIDTH),
                np.frombuffer(bytes(ring.stamps), dtype=np.int64),
            )
            for key, ring in self._rings.items()
            if model is None or key[0] == model
        }


def _midpoints() -> np.ndarray:
    """What a latency bucket stands for: its geometric middle (the first: its bound; the
    last, past every bound: the last bound, a floor)."""
    bounds = np.array(BOUNDS)
    inner = np.sqrt(bounds[:-1] * bounds[1:])
    return np.concatenate([[bounds[0]], inner, [bounds[-1]]])


MIDPOINTS_S = _midpoints()


def percentiles(histograms: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Each row's latency at each quantile, in seconds (rows x quantiles; NaN for a row
    with no latencies), from rows of latency bucket counts."""
    running = np.cumsum(histograms, axis=-1)
    totals = running[..., -1:]
    out = np.full((*histograms.shape[:-1], len(quantiles)), np.nan)
    for column, quantile in enumerate(quantiles):
        # The first bucket whose running count reaches the quantile's share of the total.
        reached = running >= np.maximum(quantile * totals, 1e-9)
        index = reached.argmax(axis=-1)
        out[..., column] = np.where(totals[..., 0] > 0, MIDPOINTS_S[index], np.nan)
    return out

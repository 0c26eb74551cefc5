"""The inference path's own counters: requests by outcome, and the time before the work
started and of the run, per (model, version, protocol). Kept as plain numbers under one
lock (a few hundred nanoseconds per request, where prometheus_client's objects cost about
four microseconds) and read out at scrape time (``app.api.metrics``), or pushed into the
shared multiprocess metrics every second when several gateway processes share a port.
Under the same lock, each request is also counted in the current second's slot of the
per-second ring (``app.serving.seconds``) that the serving page draws over time."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field

from app.serving.seconds import (
    ANSWERED,
    CLIENT_ERROR,
    OK,
    SERVER_ERROR,
    SHADOW,
    RingCopy,
    SecondsRing,
)

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
Key = tuple[str, str, str]  # model, version ('' when a request resolved to none), protocol
_Own = tuple[str, int, str]  # the same, with the version as a number (0: none)
OUTCOMES = ("ok", "client_error", "server_error")


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (the last one past every bound), their sum and total."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            [now - then for now, then in zip(self.counts, earlier.counts, strict=True)],
            self.total - earlier.total,
        )


@dataclass(slots=True)
class Series:
    """One (model, version, protocol)'s counts."""

    outcomes: list[int] = field(default_factory=lambda: [0, 0, 0])  # as OUTCOMES
    queue: Histogram = field(default_factory=Histogram)
    compute: Histogram = field(default_factory=Histogram)

    def copy(self) -> Series:
        return Series(
            list(self.outcomes),
            Histogram(list(self.queue.counts), self.queue.total),
            Histogram(list(self.compute.counts), self.compute.total),
        )


class ServingCounters:
    """Thread-safe counts of the inference path (event loop and gRPC threads alike)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[_Own, Series] = {}
        self._seconds = SecondsRing()
        self._changes = 0  # counts added to the per-second series, ever (tells a writer)
        # Versions a name resolved to are finite; series of names that resolved to nothing
        # share one key with an empty model, so a caller cannot mint series.

    def _get(self, key: _Own) -> Series:
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, Series())
        return series

    def succeeded(
        self,
        model: str,
        version: int,
        protocol: str,
        queue_s: float,
        compute_s: float,
        latency_s: float,
    ) -> None:
        """An answered request: the wait before its run, the run, and its whole latency
        (from arrival to the encoded answer)."""
        second = int(time.time())
        with self._lock:
            series = self._series.get((model, version, protocol))
            if series is None:
                series = self._get((model, version, protocol))
            series.outcomes[0] += 1
            series.queue.observe(queue_s)
            series.compute.observe(compute_s)
            self._seconds.add((model, version, ANSWERED), second, OK, latency_s)
            self._changes += 1

    def failed(self, model: str, version: int | None, protocol: str, status: int) -> None:
        """A failed request, labelled by the version it resolved to (none: no labels)."""
        key = ("", 0, protocol) if version is None else (model, version, protocol)
        outcome = CLIENT_ERROR if status < 500 else SERVER_ERROR
        second = int(time.time())
        with self._lock:
            self._get(key).outcomes[outcome] += 1  # OUTCOMES and the ring share an order
            self._seconds.add((key[0], key[1], ANSWERED), second, outcome, None)
            self._changes += 1

    def shadow_ran(self, model: str, version: int, ok: int, failed: int, seconds: float) -> None:
        """Copies of requests the shadow ``version`` ran together in ``seconds`` (``ok``)
        or failed on (off the request path: the shadow's own thread)."""
        second = int(time.time())
        with self._lock:
            self._seconds.add_many((model, version, SHADOW), second, ok, failed, seconds)
            self._changes += 1

    def seconds_copy(self, model: str | None = None) -> dict[tuple[str, int, int], RingCopy]:
        """The per-second series of ``model`` (all: None), copied."""
        with self._lock:
            return self._seconds.copy(model)

    def seconds_changed(self) -> tuple[int, dict[tuple[str, int, int], RingCopy]]:
        """Every per-second series, copied, with how many counts were added before the
        copy: a writer that kept the number knows whether anything changed since (a
        request stamps its second before it takes the lock, so comparing seconds would
        miss one counted just after a copy, in the second before it)."""
        with self._lock:
            return self._changes, self._seconds.copy(None)

    def snapshot(self) -> dict[Key, Series]:
        """A copy of every series (for a scrape, or a push of what changed since)."""
        with self._lock:
            return {
                (model, str(version) if version else "", protocol): series.copy()
                for (model, version, protocol), series in self._series.items()
            }

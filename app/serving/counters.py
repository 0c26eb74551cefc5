"""The inference path's own counters: requests by outcome, and the time before the work
started and of the run, per (model, version, protocol). Kept as plain numbers under one
lock (a few hundred nanoseconds per request, where prometheus_client's objects cost about
four microseconds) and read out at scrape time (``app.api.metrics``), or pushed into the
shared multiprocess metrics every second when several gateway processes share a port."""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

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
        # Versions a name resolved to are finite; series of names that resolved to nothing
        # share one key with an empty model, so a caller cannot mint series.

    def _get(self, key: _Own) -> Series:
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, Series())
        return series

    def succeeded(
        self, model: str, version: int, protocol: str, queue_s: float, compute_s: float
    ) -> None:
        with self._lock:
            series = self._series.get((model, version, protocol))
            if series is None:
                series = self._get((model, version, protocol))
            series.outcomes[0] += 1
            series.queue.observe(queue_s)
            series.compute.observe(compute_s)

    def failed(self, model: str, version: int | None, protocol: str, status: int) -> None:
        """A failed request, labelled by the version it resolved to (none: no labels)."""
        key = ("", 0, protocol) if version is None else (model, version, protocol)
        with self._lock:
            self._get(key).outcomes[1 if status < 500 else 2] += 1

    def snapshot(self) -> dict[Key, Series]:
        """A copy of every series (for a scrape, or a push of what changed since)."""
        with self._lock:
            return {
                (model, str(version) if version else "", protocol): series.copy()
                for (model, version, protocol), series in self._series.items()
            }

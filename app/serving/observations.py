"""The one queue between the request path and everything that watches it: the shadow's
copy, the request log and drift each take a reference to the answered request from here.

The request path decides first which of them want the request (the shadow always, the log
and drift by their samples) and, only if one does, appends one ``Observation`` holding
references to the arrays it already has: nothing is copied. The queue is bounded in real
bytes: a numeric array counts its ``nbytes``; a text array a pointer and a string header
per value plus the request's size in bytes, which bounds the total length of its strings.
A request that does not fit is dropped and counted, never waited for."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from app.serving.runtime import Feeds, LoadedModel

TEXT_VALUE_BYTES = 8 + 49  # a pointer in the array and an empty str's header


def observation_bytes(feeds: Feeds, output: np.ndarray, payload_bytes: int) -> int:
    """What holding ``feeds`` and ``output`` costs (see the module docstring)."""
    total = output.nbytes
    text = False
    for values in feeds.values():
        if values.dtype == object:
            total += values.size * TEXT_VALUE_BYTES
            text = True
        else:
            total += values.nbytes
    return total + payload_bytes if text else total


@dataclass(slots=True)
class Observation:
    """An answered request, and which watchers want it."""

    name: str
    version: int
    model: LoadedModel
    protocol: str
    feeds: Feeds
    output: np.ndarray
    latency_s: float
    at: float  # seconds since the epoch
    size: int  # bytes it holds (``observation_bytes``)
    shadow: int | None = None  # the shadow version that gets a copy
    request_id: str | None = None  # set when it is logged: the gateway's id, unique
    client_request_id: str | None = None  # the client's x-request-id, when logged
    drift_threshold: float | None = None  # set when drift samples it

    @property
    def rows(self) -> int:
        return len(self.output)


class ObservationQueue:
    """A FIFO bounded in bytes (thread-safe; ``offer`` never blocks on anything but a lock
    held for a few instructions)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[Observation] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def offer(self, observation: Observation) -> bool:
        """Queue it, or refuse it (False) when it would pass the bound."""
        with self._lock:
            if self._bytes + observation.size > self.max_bytes:
                return False
            self._bytes += observation.size
            self._items.append(observation)
        return True

    def take(self, max_bytes: int) -> list[Observation]:
        """The oldest observations, up to about ``max_bytes`` (at least one when any wait);
        their bytes stay counted until ``release``."""
        taken: list[Observation] = []
        size = 0
        with self._lock:
            while self._items and (not taken or size + self._items[0].size <= max_bytes):
                item = self._items.popleft()
                size += item.size
                taken.append(item)
        return taken

    def release(self, observations: list[Observation]) -> None:
        """Their work is done: their bytes are free again."""
        freed = sum(item.size for item in observations)
        with self._lock:
            self._bytes -= freed

    @property
    def bytes(self) -> int:
        """Bytes queued or taken and not yet released."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

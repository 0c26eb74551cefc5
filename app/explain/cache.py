"""Explainers kept per version id (least recently used dropped first), each for a time to
live: a change made in another machine's process (an upload's background set there) shows
within it; one made in this process drops them all at once (``clear``, told by the
registry's writes: a background set, an artifact deleted), and so does one made in another
gateway process of this machine, seen through the counter those processes share."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

from app.explain.explainer import Explainer

CAPACITY = 64


class Generation(Protocol):
    """A counter the gateway processes of one machine share (``app.serving.generation``)."""

    def read(self) -> int: ...


class ExplainerCache:
    """Thread-safe map of version id -> explainer."""

    def __init__(
        self, ttl_s: float, capacity: int = CAPACITY, shared: Generation | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.shared = shared  # other gateway processes' writes, when there are some
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[Explainer, float]] = OrderedDict()
        self._generation = 0
        self._seen = shared.read() if shared is not None else 0

    @property
    def generation(self) -> int:
        """Changes with every ``clear``: an explainer built across one is not kept."""
        return self._generation

    def get(self, version_id: int) -> Explainer | None:
        if self.shared is not None and (seen := self.shared.read()) != self._seen:
            self.clear()
            self._seen = seen
        with self._lock:
            entry = self._entries.get(version_id)
            if entry is None or entry[1] < time.monotonic():
                return None
            self._entries.move_to_end(version_id)
            return entry[0]

    def put(self, version_id: int, explainer: Explainer, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._entries[version_id] = (explainer, time.monotonic() + self.ttl_s)
            self._entries.move_to_end(version_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

"""Deadlines for runs that can be told to stop: one watchdog thread sets ``terminate`` on
each watched run's options once its deadline passes. onnxruntime's ``RunOptions`` is such
an object (the session checks the flag between nodes, and inside a Loop's body), so an
uploaded graph whose running time depends on its input cannot hold a gateway thread past
its deadline. Nothing here imports onnxruntime: anything with a ``terminate`` attribute
can be watched."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class Stoppable(Protocol):
    """What the watchdog sets: onnxruntime's ``RunOptions`` has it."""

    terminate: bool


class Watchdog:
    """Sets ``terminate`` on watched options past their deadlines, from one daemon thread
    that starts on first use and sleeps until the nearest deadline."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Stoppable]] = []
        self._done: set[int] = set()
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, options: Stoppable, seconds: float) -> Iterator[None]:
        """Within the block, ``options.terminate`` becomes True once ``seconds`` pass."""
        ticket = next(self._order)
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + seconds, ticket, options))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="run-deadlines", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._done.add(ticket)

    def _serve(self) -> None:
        with self._changed:
            while True:
                while self._due and self._due[0][1] in self._done:
                    self._done.discard(heapq.heappop(self._due)[1])
                if not self._due:
                    self._changed.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                _, ticket, options = heapq.heappop(self._due)
                options.terminate = True
                self._done.discard(ticket)


WATCHDOG = Watchdog()  # one per process: every deadline shares its thread


class DeadlinePassed(Exception):
    """A run was told to stop at its deadline (and stopped, by raising)."""


def run_until(options: Stoppable, seconds: float, run: Callable[[], _T]) -> _T:
    """``run()`` (which passes ``options`` to the runtime) under a deadline of ``seconds``:
    DeadlinePassed when the watchdog stopped it, any other failure as it is."""
    try:
        with WATCHDOG.watch(options, seconds):
            return run()
    except Exception:
        if options.terminate:
            raise DeadlinePassed from None
        raise

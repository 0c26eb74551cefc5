"""The watchdog sets ``terminate`` on a run's options once its deadline passes, and never
on a run that finished in time."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from app.core.deadlines import Watchdog


@dataclass
class Options:
    terminate: bool = False


def test_a_run_past_its_deadline_is_told_to_stop() -> None:
    watchdog = Watchdog()
    options = Options()
    stopped = threading.Event()
    with watchdog.watch(options, 0.05):
        for _ in range(2000):  # until the flag is set, as onnxruntime checks it between nodes
            if options.terminate:
                stopped.set()
                break
            threading.Event().wait(0.005)
    assert stopped.is_set()


def test_a_run_that_finishes_in_time_is_never_stopped() -> None:
    watchdog = Watchdog()
    finished = [Options() for _ in range(20)]
    for options in finished:
        with watchdog.watch(options, 0.05):
            pass
    late = Options()
    with watchdog.watch(late, 0.1):  # outlives every deadline above
        while not late.terminate:
            threading.Event().wait(0.005)
    assert not any(options.terminate for options in finished)

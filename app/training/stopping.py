"""Stopping training between two batches: a check installed by whoever runs the work (a job's
cancel flag, its time limits) and called by every training loop once per batch.

torch-free, so the job runner can install checks without importing torch. The check lives in
a context variable: it applies to the thread that installed it, and checks nest (the
innermost runs first, then the ones around it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Check = Callable[[], None]
_checks: ContextVar[tuple[Check, ...]] = ContextVar("kiln_stop_checks", default=())


class TrainingStopped(Exception):
    """Training was stopped at a limit; the message says which."""


@contextmanager
def stop_checks(check: Check) -> Iterator[None]:
    """Run ``check`` at every batch of any training inside the block (it raises to stop)."""
    token = _checks.set((check, *_checks.get()))
    try:
        yield
    finally:
        _checks.reset(token)


def check_stop() -> None:
    """Called by training loops once per batch: raises if a check says stop."""
    for check in _checks.get():
        check()

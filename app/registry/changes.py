"""Writes that change what serves, published once their transaction commits.

Serving caches key checks and name -> version resolutions (``app.serving.directory``). Any
committed write to the rows those are read from (models and their serving options,
versions, aliases, API keys) must reach the cache at once, whoever made it: a route, a
dashboard form, the CLI through the API, a promotion. Rather than have every writer
remember to invalidate, the ORM session tells: a flush that touched such a row (or an
UPDATE/DELETE statement on such a table) marks the session, and its commit publishes one
notice to every subscriber in this process. A rolled-back transaction publishes nothing.

Other processes (workers registering versions, other machines' gateways) are seen through
the cache's time to live; gateway processes of one machine share a generation counter that
the directory bumps when told (``app.serving.generation``)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from app.core.db import Session, WriteWatch
from app.tables import Alias, ApiKey, Model, ModelVersion

logger = logging.getLogger(__name__)

WATCHED = (Model, ModelVersion, Alias, ApiKey)  # what a key check or a resolution reads

_lock = threading.Lock()
_subscribers: list[weakref.WeakMethod[Callable[[], None]] | Callable[[], None]] = []


def subscribe(callback: Callable[[], None]) -> None:
    """Call ``callback`` after every commit that changed what serves. A bound method is
    held weakly (a gateway that is gone stops being told); a function strongly."""
    reference: Any = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else callback
    with _lock:
        _subscribers.append(reference)


def mark_changed(session: Session) -> None:
    """Publish after this session's commit even if no watched row was flushed (a write
    made with raw SQL, say)."""
    _watch.mark(session)


def publish() -> None:
    """Tell every live subscriber (a failing one is logged; the others are still told)."""
    with _lock:
        live: list[Callable[[], None]] = []
        kept: list[Any] = []
        for reference in _subscribers:
            callback = reference() if isinstance(reference, weakref.WeakMethod) else reference
            if callback is not None:
                live.append(callback)
                kept.append(reference)
        _subscribers[:] = kept
    for callback in live:
        try:
            callback()
        except Exception:
            logger.exception("a serving cache could not be told of a committed write")


# Every session of the process marks itself when it writes what serves, and publishes on
# its commit (app.core.db holds the session events).
_watch = WriteWatch("kiln_serving_changed", WATCHED, publish)

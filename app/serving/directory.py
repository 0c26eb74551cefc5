"""The hot path's memory: API-key checks and name -> version resolution without a database
round trip per request.

Entries live for ``ttl_s`` seconds. A write made through this gateway (alias moved, version
uploaded or archived, key revoked, batching changed) calls ``invalidate()`` after its commit,
so it shows on the very next request; ``ttl_s`` only bounds how long a change made by another
process (a worker registering a version, a second gateway) takes to show. A generation
counter keeps a lookup that raced with an invalidation from caching what it read."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from app.auth import Principal, authenticate, hash_secret
from app.db import session_scope
from app.errors import Unavailable
from app.registry.service import get_model, resolve_serving_version
from app.serving.batching import BatchPolicy, DynamicBatcher
from app.serving.runtime import LoadedModel, SessionCache
from app.signature import Signature


@dataclass(frozen=True)
class ServedVersion:
    """What a request for (name, version) resolved to, as read from the registry."""

    version: int
    version_id: int
    artifact_key: str
    sha256: str
    signature: Signature
    task: str
    labels: list[Any] | None
    batching: BatchPolicy | None


@dataclass(frozen=True)
class Target:
    """A resolved version with its loaded session (and batcher, when batching is on)."""

    name: str
    version: int
    model: LoadedModel
    batcher: DynamicBatcher | None


class ServingDirectory:
    """Thread-safe caches of key checks and version resolution, shared by every route."""

    def __init__(self, database_url: str, sessions: SessionCache, *, ttl_s: float,
                 max_entries: int = 10_000) -> None:
        self.database_url = database_url
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._generation = 0
        self._keys: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._routes: OrderedDict[tuple[str, int | None], tuple[ServedVersion, float]] = (
            OrderedDict())
        self._batchers: dict[int, DynamicBatcher] = {}  # by version id

    # -- invalidation ---------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget every cached key check and resolution (call after a committed write)."""
        with self._lock:
            self._generation += 1
            self._keys.clear()
            self._routes.clear()

    def _store(self, table: OrderedDict[Any, Any], key: Any, value: Any,
               generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a write committed while we read; do not cache what may be stale
            table[key] = (value, time.monotonic() + self.ttl_s)
            table.move_to_end(key)
            while len(table) > self.max_entries:
                table.popitem(last=False)

    def _fresh(self, table: OrderedDict[Any, Any], key: Any) -> Any:
        entry = table.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    # -- API keys -------------------------------------------------------------------------
    def cached_principal(self, secret: str) -> Principal | None:
        """The principal for a key checked less than ``ttl_s`` ago; never touches the DB."""
        principal: Principal | None = self._fresh(self._keys, hash_secret(secret))
        return principal

    def authenticate(self, secret: str) -> Principal:
        """Check a key against the registry (blocking) and remember a valid one."""
        generation = self._generation
        with session_scope(self.database_url) as session:
            principal = authenticate(session, secret)
        self._store(self._keys, hash_secret(secret), principal, generation)
        return principal

    # -- versions -------------------------------------------------------------------------
    def cached_target(self, name: str, version: int | None) -> Target | None:
        """The target for a recent resolution whose session is still loaded; no I/O."""
        served: ServedVersion | None = self._fresh(self._routes, (name, version))
        if served is None:
            return None
        model = self.sessions.peek(served.version_id)
        return None if model is None else self._target(name, served, model)

    def _served(self, name: str, version: int | None) -> ServedVersion:
        served: ServedVersion | None = self._fresh(self._routes, (name, version))
        if served is None:
            generation = self._generation
            served = self._resolve(name, version)
            self._store(self._routes, (name, version), served, generation)
        return served

    def check_servable(self, name: str, version: int | None) -> None:
        """Resolve without loading: NotFound for no such live version, Unavailable when
        its artifact is gone. Blocking; never touches the session cache's contents."""
        served = self._served(name, version)
        if self.sessions.peek(served.version_id) is None and not self.sessions.has_artifact(
                served.artifact_key):
            raise Unavailable(f"artifact of version {served.version} of {name!r} is missing")

    def target(self, name: str, version: int | None) -> Target:
        """Resolve (alias rules apply) and load; blocking, so call it off the event loop."""
        served = self._served(name, version)
        model = self.sessions.get(version_id=served.version_id,
                                  artifact_key=served.artifact_key, sha256=served.sha256,
                                  signature=served.signature, task=served.task,
                                  labels=served.labels)
        return self._target(name, served, model)

    def _resolve(self, name: str, version: int | None) -> ServedVersion:
        with session_scope(self.database_url) as session:
            row = resolve_serving_version(session, name, version)
            policy = BatchPolicy.from_config(get_model(session, name).serving)
            return ServedVersion(version=row.version, version_id=row.id,
                                 artifact_key=row.artifact_key, sha256=row.sha256,
                                 signature=row.signature, task=row.task,
                                 labels=row.class_labels, batching=policy)

    def _target(self, name: str, served: ServedVersion, model: LoadedModel) -> Target:
        batcher = None
        if served.batching is not None:
            with self._lock:
                batcher = self._batchers.get(served.version_id)
                if (batcher is None or batcher.model is not model
                        or batcher.policy != served.batching):
                    batcher = DynamicBatcher(model, served.batching)
                    self._batchers[served.version_id] = batcher
        return Target(name=name, version=served.version, model=model, batcher=batcher)

"""The hot path's memory: API-key checks and name -> version resolution without a database
round trip per request.

Entries live for ``ttl_s`` seconds. A write committed in this process that changes what serves
(alias moved, version uploaded or archived, key revoked, serving options changed) is
published by ``app.registry.changes``, which calls ``invalidate()``, so it shows on the very
next request; ``ttl_s`` only bounds how long a change made by another
process (a worker registering a version, a second gateway) takes to show. A generation
counter keeps a lookup that raced with an invalidation from caching what it read.

An entry past half its life is read again by one background thread while requests keep
using it, so steady traffic never waits on the database (and never stampedes it when an
entry expires); an entry past its whole life is never used."""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.auth import Principal, authenticate
from app.contracts.signature import VersionConfig
from app.contracts.traffic import AliasPolicy, TrafficSplit
from app.core.db import session_scope
from app.core.errors import KilnError, NotFound, Unavailable
from app.core.names import MODEL_NAME, shown
from app.registry import changes
from app.registry.service import get_model, resolve_serving_version, uploaded_origin
from app.registry.traffic import serving_policy
from app.serving.batching import BatchPolicy, DynamicBatcher, StoredServingOptions
from app.serving.coalesce import Coalescer
from app.serving.generation import SharedGeneration
from app.serving.runtime import LoadedModel, ModelSource, SessionCache, UploadLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedVersion:
    """What a request for (name, version) resolved to, as read from the registry."""

    version: int
    source: ModelSource  # what loading it needs, and where it runs
    batching: BatchPolicy | None
    log_sample: float | None = None  # the model's own request-log share (None: the default)
    drift_threshold: float | None = None  # the model's own drift threshold


@dataclass(frozen=True)
class Target:
    """A resolved version with its loaded session (and batcher, when batching is on), and
    the shadow version that gets a copy of the request (when it came through the serving
    alias and the alias has one)."""

    name: str
    version: int
    model: LoadedModel
    batcher: DynamicBatcher | None
    shadow: int | None = None
    log_sample: float | None = None
    drift_threshold: float | None = None
    coalescer: Coalescer | None = None  # same-turn merging (in-process models, no batcher)
    served: ServedVersion | None = None  # what it was built from (a cached target's check)


NO_POLICY = AliasPolicy(version=0)  # a model whose serving alias has no split or shadow


def bucket_of(route_key: str | None) -> int:
    """0 to 99: the same for the same key (sticky), at random without one."""
    if route_key:
        return zlib.crc32(route_key.encode("utf-8", "surrogatepass")) % 100
    return int(random.random() * 100)


class ServingDirectory:
    """Thread-safe caches of key checks and version resolution, shared by every route."""

    def __init__(
        self,
        database_url: str,
        sessions: SessionCache,
        *,
        ttl_s: float,
        max_entries: int = 10_000,
        shared: SharedGeneration | None = None,
        uploads: UploadLimits,
        max_rows: int = 10_000,
        coalesce: bool = True,
    ) -> None:
        self.database_url = database_url
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.uploads = uploads  # how graphs that came from uploads are served
        self.max_rows = max_rows  # the gateway's rows per request
        self.coalesce = coalesce  # same-turn merging of in-process models' requests
        self._lock = threading.Lock()
        self._generation = 0
        # secret -> (principal, expires, refresh after); the secret itself is the key: this
        # process sees it on every request anyway, and hashing it again costs per request.
        self._keys: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()
        self._routes: OrderedDict[tuple[str, int | None], tuple[ServedVersion, float, float]] = (
            OrderedDict()
        )
        self._policies: OrderedDict[str, tuple[AliasPolicy, float, float]] = OrderedDict()
        self._tables: dict[TrafficSplit, tuple[int, ...]] = {}  # each split's 100 buckets
        self._batchers: dict[int, DynamicBatcher] = {}  # by version id
        self._coalescers: dict[int, Coalescer] = {}  # by version id
        self._targets: dict[tuple[str, int, int | None], Target] = {}
        self._hot: dict[tuple[str, int | None], tuple[Target, float]] = {}  # (target, until)
        self._refreshing: set[Hashable] = set()
        self._refresher: ThreadPoolExecutor | None = None
        self.shared = shared  # other gateway processes' writes, when there are some
        self._seen = shared.read() if shared is not None else 0
        changes.subscribe(self.invalidate)  # every committed write that changes what serves

    # -- invalidation ---------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget every cached key check and resolution (call after a committed write), here
        and in the other gateway processes of this machine."""
        seen = self.shared.bump() if self.shared is not None else 0
        self._drop(seen)

    def _drop(self, seen: int) -> None:
        with self._lock:
            self._generation += 1
            self._seen = seen
            self._keys.clear()
            self._routes.clear()
            self._policies.clear()
            self._tables.clear()
            self._targets.clear()
            self._hot.clear()

    def _store(self, table: OrderedDict[Any, Any], key: Any, value: Any, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a write committed while we read; do not cache what may be stale
            now = time.monotonic()
            table[key] = (value, now + self.ttl_s, now + self.ttl_s / 2)
            table.move_to_end(key)
            while len(table) > self.max_entries:
                table.popitem(last=False)

    def _fresh(self, table: OrderedDict[Any, Any], key: Any, refresh: Callable[[], object]) -> Any:
        """The entry's value while it lives (None after); past half its life, ``refresh``
        is started in the background, once."""
        if self.shared is not None and (seen := self.shared.read()) != self._seen:
            self._drop(seen)  # another gateway process committed a write
        entry = table.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[1] < now:
            return None
        if entry[2] <= now:
            self._refresh_later((id(table), key), refresh)
        return entry[0]

    def _refresh_later(self, tag: Hashable, refresh: Callable[[], object]) -> None:
        with self._lock:
            if tag in self._refreshing:
                return
            self._refreshing.add(tag)
            if self._refresher is None:
                self._refresher = ThreadPoolExecutor(1, thread_name_prefix="serving-refresh")

        def run() -> None:
            try:
                refresh()
            except KilnError:
                pass  # the next request that needs it looks it up and explains
            except Exception:
                logger.exception("refreshing a serving cache entry failed")
            finally:
                with self._lock:
                    self._refreshing.discard(tag)

        self._refresher.submit(run)

    def _forget(self, table: OrderedDict[Any, Any], key: Any) -> None:
        with self._lock:
            table.pop(key, None)

    # -- API keys -------------------------------------------------------------------------
    def cached_principal(self, secret: str) -> Principal | None:
        """The principal for a key checked less than ``ttl_s`` ago; never touches the DB."""
        principal: Principal | None = self._fresh(self._keys, secret, lambda: self._recheck(secret))
        return principal

    def authenticate(self, secret: str) -> Principal:
        """Check a key against the registry (blocking) and remember a valid one."""
        generation = self._generation
        with session_scope(self.database_url) as session:
            principal = authenticate(session, secret)
        self._store(self._keys, secret, principal, generation)
        return principal

    def _recheck(self, secret: str) -> None:
        try:
            self.authenticate(secret)
        except KilnError:  # revoked by another process: refused from the next request
            self._forget(self._keys, secret)
            raise

    # -- traffic policies -----------------------------------------------------------------
    def _policy(self, name: str) -> AliasPolicy:
        """The serving alias's split and shadow (cached like a resolution); blocking."""
        policy: AliasPolicy | None = self._fresh(self._policies, name, lambda: self._repolicy(name))
        return policy if policy is not None else self._repolicy(name)

    def _repolicy(self, name: str) -> AliasPolicy:
        generation = self._generation
        with session_scope(self.database_url) as session:
            policy = serving_policy(session, get_model(session, name)) or NO_POLICY
        if policy.split is None and policy.shadow is None:
            policy = NO_POLICY
        self._store(self._policies, name, policy, generation)
        return policy

    def _routed(self, policy: AliasPolicy, version: int | None, bucket: int | None) -> int | None:
        """The version a request for ``version`` (None: the serving alias) goes to."""
        if version is None and policy.split is not None:
            routes = self._tables.get(policy.split)
            if routes is None:
                routes = self._tables.setdefault(policy.split, policy.split.routes())
            return routes[bucket_of(None) if bucket is None else bucket]
        return version

    # -- versions -------------------------------------------------------------------------
    def cached_target(
        self, name: str, version: int | None, bucket: int | None = None
    ) -> Target | None:
        """The target for a recent resolution whose session is still loaded; no I/O. A
        request that no split routes is answered from one dict until its entries are due
        for a refresh (then the full path below runs, and starts the refresh)."""
        asked = version
        hot = self._hot.get((name, asked))
        if (
            hot is not None
            and time.monotonic() < hot[1]
            and (self.shared is None or self.shared.read() == self._seen)
        ):
            return hot[0]
        shadow = None
        split = False
        if version is None:
            policy: AliasPolicy | None = self._fresh(
                self._policies, name, lambda: self._repolicy(name)
            )
            if policy is None:
                return None
            version, shadow = self._routed(policy, None, bucket), policy.shadow
            split = policy.split is not None
        served: ServedVersion | None = self._fresh(
            self._routes, (name, version), lambda: self._reresolve(name, version)
        )
        if served is None:
            return None
        model = self.sessions.peek(served.source.version_id)
        if model is None:
            return None
        target = self._target(name, served, model, shadow)
        if not split:
            self._remember_hot((name, asked), (name, version), target)
        return target

    def _remember_hot(
        self, key: tuple[str, int | None], route_key: tuple[str, int | None], target: Target
    ) -> None:
        """Keep ``target`` for the hot path until the first entry it was built from is due
        for a refresh (or gone)."""
        name, asked = key
        with self._lock:
            route = self._routes.get(route_key)
            policy = self._policies.get(name) if asked is None else route
            if route is None or policy is None:
                return
            due = [route[2], policy[2]]
            if len(self._hot) >= self.max_entries:
                self._hot.clear()
            self._hot[key] = (target, min(due))

    def _served(self, name: str, version: int | None) -> ServedVersion:
        if not MODEL_NAME.is_valid(name):  # bounded before any lookup, and never echoed
            raise NotFound(f"model {shown(name)} not found")
        served: ServedVersion | None = self._fresh(
            self._routes, (name, version), lambda: self._reresolve(name, version)
        )
        return served if served is not None else self._reresolve(name, version)

    def _reresolve(self, name: str, version: int | None) -> ServedVersion:
        generation = self._generation
        try:
            served = self._resolve(name, version)
        except KilnError:  # gone (archived, say): looked up again, and explained, on use
            self._forget(self._routes, (name, version))
            raise
        self._store(self._routes, (name, version), served, generation)
        return served

    def check_servable(self, name: str, version: int | None) -> None:
        """Resolve without loading: NotFound for no such live version, Unavailable when
        its artifact is gone. Blocking; never touches the session cache's contents."""
        served = self._served(name, version)
        if self.sessions.peek(served.source.version_id) is None and not (
            self.sessions.has_artifact(served.source.artifact_key)
        ):
            raise Unavailable(f"artifact of version {served.version} of {name!r} is missing")

    def target(self, name: str, version: int | None, bucket: int | None = None) -> Target:
        """Resolve (alias rules and the serving alias's split apply) and load; blocking, so
        call it off the event loop."""
        shadow = None
        if version is None:
            if not MODEL_NAME.is_valid(name):
                raise NotFound(f"model {shown(name)} not found")
            policy = self._policy(name)
            version, shadow = self._routed(policy, None, bucket), policy.shadow
        served = self._served(name, version)
        model = self.sessions.get(served.source)
        return self._target(name, served, model, shadow)

    def shadow_model(self, name: str, version: int) -> LoadedModel:
        """The loaded model a shadow copy of ``name`` runs on (blocking): see
        ``SessionCache.get_for_shadow``."""
        return self.sessions.get_for_shadow(self._served(name, version).source)

    def _resolve(self, name: str, version: int | None) -> ServedVersion:
        with session_scope(self.database_url) as session:
            row = resolve_serving_version(session, name, version)
            options = StoredServingOptions.model_validate(get_model(session, name).serving or {})
            policy = BatchPolicy.from_options(options)
            origin = uploaded_origin(session, row)
            plan = self.uploads.plan(
                None if origin is None else (origin.config or VersionConfig()),
                row.latency_p50_ms,  # the served graph's own run, measured when registered
            )
            return ServedVersion(
                version=row.version,
                source=ModelSource(
                    version_id=row.id,
                    artifact_key=row.artifact_key,
                    sha256=row.sha256,
                    signature=row.signature,
                    task=row.task,
                    labels=row.class_labels,
                    plan=plan,
                    label=f"version {row.version} of {name!r}",
                    load_bytes=(origin.config.load_bytes or 0)
                    if origin is not None and origin.config is not None
                    else 0,
                ),
                batching=policy,
                log_sample=options.log_sample,
                drift_threshold=options.drift_threshold,
            )

    def _target(
        self, name: str, served: ServedVersion, model: LoadedModel, shadow: int | None = None
    ) -> Target:
        """The target of a resolution, built once per (resolution, loaded model, shadow)."""
        key = (name, served.version, shadow)
        target = self._targets.get(key)
        if target is not None and target.served is served and target.model is model:
            return target
        batcher = coalescer = None
        merged = model.max_rows(self.max_rows)  # the most rows one shared run may hold:
        if model.plan.inline_rows is not None:  # a bounded upload's, those run inline
            merged = min(merged, model.plan.inline_rows)
        with self._lock:  # requests share runs only of a graph that answers row by row
            if served.batching is not None and model.plan.rows_independent:
                batcher = self._batchers.get(model.version_id)
                if (
                    batcher is None
                    or batcher.model is not model
                    or batcher.policy != served.batching
                ):
                    batcher = DynamicBatcher(model, served.batching)
                    self._batchers[model.version_id] = batcher
            elif self.coalesce and model.plan.rows_independent and merged > 1:
                coalescer = self._coalescers.get(model.version_id)
                if coalescer is None or coalescer.model is not model:
                    coalescer = Coalescer(model, merged)
                    self._coalescers[model.version_id] = coalescer
            target = Target(
                name=name,
                version=served.version,
                model=model,
                batcher=batcher,
                shadow=shadow,
                log_sample=served.log_sample,
                drift_threshold=served.drift_threshold,
                coalescer=coalescer,
                served=served,
            )
            if len(self._targets) >= self.max_entries:
                self._targets.clear()
            self._targets[key] = target
        return target

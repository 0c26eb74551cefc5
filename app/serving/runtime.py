"""onnxruntime sessions: loading with a digest check, warm-up, and an LRU cache per version."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from app.contracts.signature import Signature, TensorSpec
from app.core.deadlines import DeadlinePassed, run_until
from app.core.errors import InvalidInput, Unavailable
from app.evaluation.sessions import open_session
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)
Feeds = dict[str, np.ndarray]  # input name -> array with rows first
MB = 1024 * 1024


@dataclass(frozen=True)
class RunGuard:
    """How a graph that came from an upload is served: never on the event loop, without a
    memory arena (what a run allocates is returned when it ends), each run stopped after
    ``timeout_s``, and at most ``max_rows`` rows per request (None: the gateway's limit),
    from the memory per row its probe measured."""

    timeout_s: float
    max_rows: int | None
    bytes_per_row: int | None

    def run(self, session: ort.InferenceSession, output_name: str, feeds: Feeds) -> np.ndarray:
        options = ort.RunOptions()
        options.log_severity_level = 4  # the stop is logged here, once, without the noise
        try:
            outputs = run_until(
                options, self.timeout_s, lambda: session.run([output_name], feeds, options)
            )
        except DeadlinePassed:
            logger.warning("a run of an uploaded model passed %g s and was stopped", self.timeout_s)
            raise InvalidInput(
                f"the model did not finish within {self.timeout_s:g} s on this request "
                "(KILN_UPLOAD_RUN_TIMEOUT_S, for uploaded models); the run was stopped"
            ) from None
        output: np.ndarray = outputs[0]
        return output

    def rows_note(self) -> str:
        """Why this model takes fewer rows than the gateway's limit, for an error message."""
        per_row = (self.bytes_per_row or 0) / MB
        return (
            f"; this uploaded model needed {per_row:.1f} MB per row when it was probed, so it "
            f"takes at most {self.max_rows} rows per request (KILN_UPLOAD_REQUEST_MEMORY_MB)"
        )


@dataclass(frozen=True)
class UploadLimits:
    """The gateway's settings for graphs that came from uploads."""

    run_timeout_s: float
    request_memory_mb: int

    def guard(self, bytes_per_row: int | None) -> RunGuard:
        """The guard of an upload whose probe measured ``bytes_per_row``."""
        max_rows = None
        if bytes_per_row:
            max_rows = max(1, self.request_memory_mb * MB // bytes_per_row)
        return RunGuard(self.run_timeout_s, max_rows, bytes_per_row)


@dataclass(frozen=True)
class LoadedModel:
    """A ready session with what the predict path needs, computed once at load."""

    version_id: int
    session: ort.InferenceSession
    input_name: str
    output_name: str
    n_features: int
    input_shape: tuple[int, ...]  # per-row shape the graph expects, e.g. (64,) or (1, 8, 8)
    input_datatype: str  # Open Inference Protocol name, e.g. FP32
    task: str
    labels: list[Any] | None
    size_bytes: int
    columns: tuple[TensorSpec, ...] | None = None  # one input per source column, if so
    guard: RunGuard | None = None  # set for graphs that came from an upload

    def run(self, feeds: Feeds) -> np.ndarray:
        """Run the graph on ``feeds`` (see ``feeds_of``); returns the first output."""
        if self.guard is not None:
            return self.guard.run(self.session, self.output_name, feeds)
        output: np.ndarray = self.session.run([self.output_name], feeds)[0]
        return output

    def max_rows(self, gateway_limit: int) -> int:
        """The most rows one request to this model may hold."""
        if self.guard is None or self.guard.max_rows is None:
            return gateway_limit
        return min(gateway_limit, self.guard.max_rows)

    def rows_note(self, gateway_limit: int) -> str:
        """Why ``max_rows`` is below the gateway's limit ('' when it is not)."""
        if self.guard is None or self.max_rows(gateway_limit) == gateway_limit:
            return ""
        return self.guard.rows_note()

    def feeds_of(self, rows: np.ndarray) -> Feeds:
        """The feeds of a single-tensor model: float32 rows of ``n_features`` values."""
        return {self.input_name: rows.reshape((rows.shape[0], *self.input_shape))}

    def empty_row(self) -> Feeds:
        """One row of zeros, or of gaps for a model that takes columns (the warm-up)."""
        if self.columns is None:
            return self.feeds_of(np.zeros((1, self.n_features), dtype=np.float32))
        return {
            column.name: np.full((1, 1), np.nan, dtype=np.float32)
            if column.datatype == "FP32"
            else np.full((1, 1), "", dtype=object)
            for column in self.columns
            if column.required
        }


def rows_in(feeds: Feeds) -> int:
    """How many rows the feeds hold."""
    return len(next(iter(feeds.values())))


class SessionCache:
    """Loaded models keyed by version id, least recently used evicted first.

    Thread-safe: a model loads under its own lock, so loading one never blocks requests
    to models already loaded."""

    def __init__(
        self, store: ArtifactStore, *, threads: int, capacity: int, max_bytes: int | None = None
    ) -> None:
        self.store = store
        self.threads = threads
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._models: OrderedDict[int, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        # Told the loaded models after each load (and eviction): metrics shared by
        # several gateway processes count them as they change.
        self.on_change: Callable[[list[LoadedModel]], None] | None = None

    def peek(self, version_id: int) -> LoadedModel | None:
        """The loaded model for a version if it is in the cache (marked recently used)."""
        with self._lock:
            model = self._models.get(version_id)
            if model is not None:
                self._models.move_to_end(version_id)
            return model

    def get(
        self,
        *,
        version_id: int,
        artifact_key: str,
        sha256: str,
        signature: Signature,
        task: str,
        labels: list[Any] | None,
        guard: RunGuard | None = None,
    ) -> LoadedModel:
        """The loaded model for a version, loading (and checking its digest) on first use."""
        with self._lock:
            model = self._models.get(version_id)
            if model is not None:
                self._models.move_to_end(version_id)
                return model
            loading = self._loading.setdefault(version_id, threading.Lock())
        with loading:
            with self._lock:
                if version_id in self._models:
                    return self._models[version_id]
            model = self._load(version_id, artifact_key, sha256, signature, task, labels, guard)
            with self._lock:
                self._models[version_id] = model
                self._loading.pop(version_id, None)
                self._evict()
                loaded = list(self._models.values())
            if self.on_change is not None:
                self.on_change(loaded)
            return model

    def _load(
        self,
        version_id: int,
        artifact_key: str,
        sha256: str,
        signature: Signature,
        task: str,
        labels: list[Any] | None,
        guard: RunGuard | None,
    ) -> LoadedModel:
        try:
            data = self.store.read_bytes(artifact_key, sha256)  # ArtifactCorrupt if changed
        except FileNotFoundError:
            raise Unavailable(f"artifact of version id {version_id} is missing") from None
        session = open_session(data, self.threads, arena=guard is None)
        by_column = signature.by_column
        model = LoadedModel(
            version_id=version_id,
            session=session,
            input_name=signature.input.name,
            output_name=signature.output.name,
            n_features=len(signature.inputs) if by_column else signature.n_features,
            input_shape=(1,) if by_column else signature.row_shape,
            input_datatype=signature.input.datatype,
            task=task,
            labels=labels,
            size_bytes=len(data),
            columns=tuple(signature.inputs) if by_column else None,
            guard=guard,
        )
        model.run(model.empty_row())  # warm-up
        return model

    def _evict(self) -> None:
        """Drop least recently used models past the count or byte bound (keeps the newest)."""

        def over() -> bool:
            total = sum(model.size_bytes for model in self._models.values())
            return len(self._models) > self.capacity or (
                self.max_bytes is not None and total > self.max_bytes
            )

        while len(self._models) > 1 and over():
            evicted, _ = self._models.popitem(last=False)
            logger.info("evicted model version %s from the session cache", evicted)

    def has_artifact(self, artifact_key: str) -> bool:
        """Whether a version's artifact is in the store (nothing is read or loaded)."""
        return self.store.exists(artifact_key)

    def loaded(self) -> list[LoadedModel]:
        """Currently loaded models, least recently used first."""
        with self._lock:
            return list(self._models.values())

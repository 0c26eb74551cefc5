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
from app.core.errors import Unavailable
from app.evaluation.sessions import open_session
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)
Feeds = dict[str, np.ndarray]  # input name -> array with rows first


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

    def run(self, feeds: Feeds) -> np.ndarray:
        """Run the graph on ``feeds`` (see ``feeds_of``); returns the first output."""
        output: np.ndarray = self.session.run([self.output_name], feeds)[0]
        return output

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
            model = self._load(version_id, artifact_key, sha256, signature, task, labels)
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
    ) -> LoadedModel:
        try:
            data = self.store.read_bytes(artifact_key, sha256)  # ArtifactCorrupt if changed
        except FileNotFoundError:
            raise Unavailable(f"artifact of version id {version_id} is missing") from None
        session = open_session(data, self.threads)
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

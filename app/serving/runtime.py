"""Loaded models: onnxruntime sessions in this process (searched models and bounded uploads),
or a handle on a sandbox process (every other upload); an LRU cache of them per version.

How a version is served is decided from the registry when it resolves (``ServingPlan``):
a graph ModelKiln made, or an upload classified *bounded* (every op of known cost, every
shape static but the batch: its cost is linear in the rows, measured at upload), runs in
this process with a row cap from its measured memory and time per row; any other upload
runs only in a sandbox process (``app.serving.sandbox``) with an OS memory limit and a
deadline that kills it. The gateway never creates an onnxruntime session for such a graph."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from app.contracts.signature import Signature, TensorSpec, VersionConfig
from app.core.errors import BrokenInvariant, InvalidInput, Unavailable
from app.evaluation.sessions import open_session
from app.serving.sandbox import SandboxedModel, SandboxPool
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)
Feeds = dict[str, np.ndarray]  # input name -> array with rows first
MB = 1024 * 1024
SHADOW_SESSIONS = 4  # one-thread sessions kept for shadows (KILN_ORT_THREADS above 1)
INLINE_S = 0.0005  # an upload's run on the event loop: at most this long, as measured
TIME_SHARE = 0.5  # a bounded upload's rows per request take at most half the deadline


@dataclass(frozen=True, slots=True)
class RowCap:
    """Fewer rows per request than the gateway's limit, and why (for the 4xx)."""

    rows: int
    why: str


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """Where a version runs: in this process (with a row cap for a bounded upload) or only
    in a sandbox process; ``reason`` says why (shown on the version)."""

    sandboxed: bool
    cap: RowCap | None = None
    reason: str = "made by ModelKiln's own exporter"
    # Whether requests may share a run: graphs ModelKiln exported answer each row from that
    # row alone; an upload only when its classification proved it (x minus the batch's mean
    # is bounded too, and merging it would let one client's rows change another's answer).
    rows_independent: bool = True
    # Made by ModelKiln's own exporter: its runs answer what its signature says, unchecked.
    trusted: bool = True
    # onnxruntime's memory arena keeps a run's peak for the next: fine for ModelKiln's own
    # graphs, never for an upload (a request at its cap would leave the gateway holding it).
    arena: bool = True
    # The most rows a request may hold to run on the event loop (None: the core's element
    # bound alone). An upload whose measured run is slow never runs there.
    inline_rows: int | None = None


IN_PROCESS = ServingPlan(sandboxed=False)


@dataclass(frozen=True)
class UploadLimits:
    """The gateway's settings for graphs that came from uploads."""

    run_timeout_s: float
    request_memory_mb: int

    def plan(self, origin: VersionConfig | None, latency_ms: float | None = None) -> ServingPlan:
        """How a version whose graph came from the upload ``origin`` describes (its probe
        measured one row in ``latency_ms``) is served; None: not from an upload."""
        if origin is None:
            return IN_PROCESS
        if origin.graph_class != "bounded":
            reason = origin.graph_class_reason or (
                "uploaded before graphs were classified (upload it again to classify it)"
            )
            return ServingPlan(
                sandboxed=True, reason=reason, rows_independent=False, trusted=False, arena=False
            )
        return ServingPlan(
            sandboxed=False,
            cap=self._cap(origin),
            reason=origin.graph_class_reason or "bounded",
            rows_independent=origin.rows_independent is True,
            trusted=False,
            arena=False,
            inline_rows=_inline_rows(latency_ms, origin.seconds_per_row),
        )

    def _cap(self, origin: VersionConfig) -> RowCap | None:
        caps: list[RowCap] = []
        if origin.bytes_per_row:
            rows = max(1, self.request_memory_mb * MB // origin.bytes_per_row)
            caps.append(
                RowCap(
                    rows,
                    f"this uploaded model needed {origin.bytes_per_row / MB:.2f} MB per row "
                    f"when it was probed, so it takes at most {rows} rows per request "
                    "(KILN_UPLOAD_REQUEST_MEMORY_MB)",
                )
            )
        if origin.seconds_per_row:
            rows = max(1, int(self.run_timeout_s * TIME_SHARE / origin.seconds_per_row))
            caps.append(
                RowCap(
                    rows,
                    f"this uploaded model took {origin.seconds_per_row * 1e3:.3f} ms per row "
                    f"when it was probed, so it takes at most {rows} rows per request "
                    "(KILN_UPLOAD_RUN_TIMEOUT_S)",
                )
            )
        return min(caps, key=lambda cap: cap.rows) if caps else None


def _inline_rows(latency_ms: float | None, seconds_per_row: float | None) -> int:
    """The most rows of a bounded upload whose measured run stays under ``INLINE_S`` (0:
    none: unmeasured, or slow even for one row; its runs all go to a worker thread)."""
    if latency_ms is None or latency_ms / 1000 > INLINE_S:
        return 0
    if not seconds_per_row:
        return 1_000_000  # too little per row to measure: the core's element bound decides
    return max(0, int((INLINE_S - latency_ms / 1000) / seconds_per_row))


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A ready model with what the predict path needs, computed once at load: an
    onnxruntime session in this process, or (``sandbox``) a handle on its sandbox."""

    version_id: int
    input_name: str
    output_name: str
    n_features: int
    input_shape: tuple[int, ...]  # per-row shape the graph expects, e.g. (64,) or (1, 8, 8)
    input_datatype: str  # Open Inference Protocol name, e.g. FP32
    task: str
    labels: list[Any] | None
    size_bytes: int
    columns: tuple[TensorSpec, ...] | None = None  # one input per source column, if so
    session: ort.InferenceSession | None = None
    sandbox: SandboxedModel | None = None
    plan: ServingPlan = IN_PROCESS
    width: int = 1  # output columns its signature promises
    plan_label: str = "the model"  # how errors name it: "version 2 of 'churn'"
    _outputs: list[str] = field(init=False, repr=False)
    classes: orjson.Fragment | None = field(init=False, repr=False)  # /v1's, as JSON

    def __post_init__(self) -> None:
        object.__setattr__(self, "_outputs", [self.output_name])
        labels = None if self.labels is None else orjson.Fragment(orjson.dumps(self.labels))
        object.__setattr__(self, "classes", labels)
        if (self.session is None) == (self.sandbox is None):
            raise BrokenInvariant("a loaded model has a session or a sandbox, not both")

    @property
    def sandboxed(self) -> bool:
        return self.sandbox is not None

    def run(self, feeds: Feeds) -> np.ndarray:
        """The first output for ``feeds`` (see ``feeds_of``); blocking. A sandboxed model's
        run waits for its sandbox (never call it on the event loop: use ``run_async``).

        A graph ModelKiln exported is trusted to answer what its signature says. An
        upload's run that onnxruntime refuses, or an answer of another shape than
        [rows, width], is the request's problem: a 422 naming the version."""
        if self.session is not None:
            if self.plan.trusted:  # made here: nothing to check
                output: np.ndarray = self.session.run(self._outputs, feeds)[0]
                return output
            try:
                output = self.session.run(self._outputs, feeds)[0]
            except Exception as error:
                raise self._refused(error) from None
        else:
            output = self.sandbox.run(feeds)  # type: ignore[union-attr]
        return self._checked(output, feeds)

    async def run_async(self, feeds: Feeds) -> np.ndarray:
        """``run`` for a caller on the event loop: a sandbox run awaits its process."""
        if self.sandbox is not None:
            return self._checked(await self.sandbox.run_async(feeds), feeds)
        return self.run(feeds)

    def _refused(self, error: Exception) -> Exception:
        """An in-process upload's failed run: onnxruntime's refusals are the request's
        (named by category only: its text may quote the graph), anything else as it is."""
        if type(error).__module__.startswith("onnxruntime"):
            return InvalidInput(
                f"{self.plan_label} failed on this request (onnxruntime: {type(error).__name__})"
            )
        return error

    def _checked(self, output: np.ndarray, feeds: Feeds) -> np.ndarray:
        rows = rows_in(feeds)
        if output.ndim != 2 or output.shape[0] != rows or output.shape[1] != self.width:
            raise InvalidInput(
                f"{self.plan_label} answered shape {list(output.shape)[:4]} on this request; "
                f"its signature promises [{rows}, {self.width}]"
            )
        return output

    def max_rows(self, gateway_limit: int) -> int:
        """The most rows one request to this model may hold."""
        cap = self.plan.cap
        return gateway_limit if cap is None else min(gateway_limit, cap.rows)

    def rows_note(self, gateway_limit: int) -> str:
        """Why ``max_rows`` is below the gateway's limit ('' when it is not)."""
        cap = self.plan.cap
        if cap is None or cap.rows >= gateway_limit:
            return ""
        return f"; {cap.why}"

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


@dataclass(frozen=True)
class ModelSource:
    """What loading a version needs, as the registry describes it."""

    version_id: int
    artifact_key: str
    sha256: str
    signature: Signature
    task: str
    labels: list[Any] | None
    plan: ServingPlan = IN_PROCESS
    label: str = ""  # how errors name it: "version 2 of 'churn'"
    load_bytes: int = 0  # what the loaded session holds, as its probe measured (uploads)


class SessionCache:
    """Loaded models keyed by version id, least recently used evicted first.

    Thread-safe: a model loads under its own lock, so loading one never blocks requests
    to models already loaded. Sandboxed models are handles on ``sandboxes``' processes."""

    def __init__(
        self,
        store: ArtifactStore,
        *,
        threads: int,
        capacity: int,
        max_bytes: int | None = None,
        sandboxes: SandboxPool | None = None,
    ) -> None:
        self.store = store
        self.threads = threads
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.sandboxes = sandboxes
        self._models: OrderedDict[int, LoadedModel] = OrderedDict()
        self._shadows: OrderedDict[int, LoadedModel] = OrderedDict()  # one-thread sessions
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

    def get(self, source: ModelSource) -> LoadedModel:
        """The loaded model for a version, loading (and checking its digest) on first use.
        A cached model loaded under another plan (a version reclassified) is loaded again."""
        version_id = source.version_id
        with self._lock:
            model = self._models.get(version_id)
            if model is not None and model.plan == source.plan:
                self._models.move_to_end(version_id)
                return model
            loading = self._loading.setdefault(version_id, threading.Lock())
        with loading:
            with self._lock:
                model = self._models.get(version_id)
                if model is not None and model.plan == source.plan:
                    return model
            model = self._load(source)
            with self._lock:
                self._models[version_id] = model
                self._models.move_to_end(version_id)
                self._loading.pop(version_id, None)
                self._evict()
                loaded = list(self._models.values())
            if self.on_change is not None:
                self.on_change(loaded)
            return model

    def get_for_shadow(self, source: ModelSource) -> LoadedModel:
        """The model a shadow copy runs on: the served one when it runs on one thread (or
        in a sandbox, which has one), else a session of its own with one intra-op thread,
        so a shadow never takes more cores than the primary it copies (a few kept)."""
        if self.threads <= 1 or source.plan.sandboxed:
            return self.get(source)
        with self._lock:
            model = self._shadows.get(source.version_id)
            if model is not None and model.plan == source.plan:
                self._shadows.move_to_end(source.version_id)
                return model
        model = self._load(source, threads=1)
        with self._lock:
            self._shadows[source.version_id] = model
            while len(self._shadows) > SHADOW_SESSIONS:
                self._shadows.popitem(last=False)
        return model

    def _load(self, source: ModelSource, threads: int | None = None) -> LoadedModel:
        try:
            data = self.store.read_bytes(source.artifact_key, source.sha256)  # checks digest
        except FileNotFoundError:
            raise Unavailable(f"artifact of version id {source.version_id} is missing") from None
        signature = source.signature
        by_column = signature.by_column
        session = sandbox = None
        if source.plan.sandboxed:
            if self.sandboxes is None:
                raise Unavailable("this process has no sandbox for uploaded graphs")
            sandbox = self.sandboxes.model(
                source.version_id,
                data,
                input_name=signature.input.name,
                output_name=signature.output.name,
                label=source.label or None,
            )
        else:
            session = open_session(data, threads or self.threads, arena=source.plan.arena)
        model = LoadedModel(
            version_id=source.version_id,
            input_name=signature.input.name,
            output_name=signature.output.name,
            n_features=len(signature.inputs) if by_column else signature.n_features,
            input_shape=(1,) if by_column else signature.row_shape,
            input_datatype=signature.input.datatype,
            task=source.task,
            labels=source.labels,
            # A sandboxed graph's session lives in its process; here only the file's bytes.
            size_bytes=len(data) if sandbox is not None else max(len(data), source.load_bytes),
            columns=tuple(signature.inputs) if by_column else None,
            session=session,
            sandbox=sandbox,
            plan=source.plan,
            width=signature.width,
            plan_label=source.label or "the model",
        )
        if session is not None:
            model.run(model.empty_row())  # warm-up (a sandbox warms up in its own process)
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

"""GET /metrics in Prometheus format: inference traffic per model and version (queue and
compute time apart), loaded models and their bytes, jobs by state."""

from __future__ import annotations

import asyncio
import hmac
import os
import threading
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.api.state import gateway_of
from app.contracts.enums import JobStatus
from app.contracts.traffic import DriftReport, ShadowStats
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import Unauthorized
from app.jobs.repository import JobRepository
from app.registry import monitoring
from app.serving.counters import BUCKETS, OUTCOMES, Histogram, Key, Series, ServingCounters
from app.serving.runtime import LoadedModel, SessionCache

router = APIRouter(tags=["metrics"])

_LABELS = ("model", "version", "protocol")
PUSH_S = 1.0  # how often a process of several pushes its inference counts to the shared files


class _StateCollector(Collector):
    """Values read at scrape time: the session cache (unless several gateway processes
    share the metrics, which then count their own models) and the jobs table."""

    def __init__(self, cache: SessionCache | None, settings: Settings) -> None:
        self.cache = cache
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        if self.cache is not None:
            loaded = self.cache.loaded()
            yield GaugeMetricFamily("kiln_models_loaded", "ONNX sessions loaded", value=len(loaded))
            yield GaugeMetricFamily(
                "kiln_models_loaded_bytes",
                "Bytes of the loaded ONNX models",
                value=sum(model.size_bytes for model in loaded),
            )
        jobs = GaugeMetricFamily("kiln_jobs", "Jobs by state", labels=["status"])
        with session_scope(self.settings.database_url) as session:
            counts = JobRepository(session).counts_by_status()
            drift = monitoring.latest_drift_by_model(session)
            events = monitoring.event_counts(session)
            shadows = [
                stats
                for name in {name for name, _ in events} | set(drift) | monitoring.shadowed(session)
                for stats in monitoring.shadow_stats(session, name)
            ]
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs
        yield from _drift_families(drift)
        yield from _shadow_families(shadows)
        happened = CounterMetricFamily(
            "kiln_model_events", "Events serving raised about a model", labels=["model", "kind"]
        )
        for (name, kind), total in sorted(events.items()):
            happened.add_metric([name, kind], total)
        yield happened


def _drift_families(drift: dict[str, DriftReport]) -> Iterator[Metric]:
    """Each model's newest drift window, per input column."""
    labels = ["model", "version", "column"]
    index = GaugeMetricFamily(
        "kiln_drift_psi", "Population stability index of the newest window", labels=labels
    )
    gaps = GaugeMetricFamily("kiln_drift_missing_share", "Share of gaps in it", labels=labels)
    unseen = GaugeMetricFamily(
        "kiln_drift_unseen_share", "Share of categories training never saw", labels=labels
    )
    for name, report in sorted(drift.items()):
        for column in report.columns:
            values = [name, str(report.version), column.column]
            if column.psi is not None:
                index.add_metric(values, column.psi)
            gaps.add_metric(values, column.missing_share)
            if column.unseen_share is not None:
                unseen.add_metric(values, column.unseen_share)
    yield from (index, gaps, unseen)


def _shadow_families(shadows: list[ShadowStats]) -> Iterator[Metric]:
    """Every shadow comparison's running totals."""
    labels = ["model", "version", "shadow"]
    rows = CounterMetricFamily("kiln_shadow_rows", "Rows the shadow answered too", labels=labels)
    agreed = CounterMetricFamily("kiln_shadow_agreed_rows", "Rows it agreed on", labels=labels)
    dropped = CounterMetricFamily(
        "kiln_shadow_dropped", "Copies dropped (its queue was full)", labels=labels
    )
    failed = CounterMetricFamily("kiln_shadow_failures", "Copies it failed on", labels=labels)
    for stats in shadows:
        values = [stats.model, str(stats.primary_version), str(stats.shadow_version)]
        rows.add_metric(values, stats.rows)
        agreed.add_metric(values, round((stats.agreement or 0.0) * stats.rows))
        dropped.add_metric(values, stats.dropped)
        failed.add_metric(values, stats.failures)
    yield from (rows, agreed, dropped, failed)


def shared_metrics_dir() -> str | None:
    """Where the gateway processes of ``kiln serve --gateways N`` keep their metrics
    (Prometheus' multiprocess mode), or None for a gateway on its own."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def leave_shared_metrics() -> None:
    """A gateway process that stops takes its live gauges out of the shared metrics."""
    if shared_metrics_dir() is not None:
        mark_process_dead(os.getpid())


def _inference_families(series: dict[Key, Series]) -> Iterator[Metric]:
    """The inference counters as Prometheus families, read at scrape time."""
    requests = CounterMetricFamily(
        "kiln_inference_requests", "Inference requests by outcome", labels=[*_LABELS, "outcome"]
    )
    queue = HistogramMetricFamily(
        "kiln_inference_queue_seconds", "Wait before the work started", labels=list(_LABELS)
    )
    compute = HistogramMetricFamily(
        "kiln_inference_compute_seconds", "onnxruntime run time", labels=list(_LABELS)
    )
    for key, counts in sorted(series.items()):
        for outcome, value in zip(OUTCOMES, counts.outcomes, strict=True):
            if value:
                requests.add_metric([*key, outcome], value)
        if counts.outcomes[0]:
            for family, histogram in ((queue, counts.queue), (compute, counts.compute)):
                family.add_metric(list(key), _cumulative(histogram), histogram.total)
    yield from (requests, queue, compute)


def _cumulative(histogram: Histogram) -> list[tuple[str, float]]:
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
        running += count
        buckets.append((floatToGoString(bound), running))
    return buckets


class _InferenceCollector(Collector):
    def __init__(self, counters: ServingCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        yield from _inference_families(self.counters.snapshot())


class _SharedPush:
    """Several gateway processes: each pushes what its counters gained since the last push
    into prometheus_client's multiprocess files every ``PUSH_S`` seconds, where
    ``/metrics`` in any of them reads every process's."""

    def __init__(self, counters: ServingCounters) -> None:
        self.counters = counters
        self.requests = Counter(
            "kiln_inference_requests",
            "Inference requests by outcome",
            [*_LABELS, "outcome"],
            registry=None,
        )
        self.queue = PromHistogram(
            "kiln_inference_queue_seconds",
            "Wait before the work started",
            _LABELS,
            buckets=BUCKETS,
            registry=None,
        )
        self.compute = PromHistogram(
            "kiln_inference_compute_seconds",
            "onnxruntime run time",
            _LABELS,
            buckets=BUCKETS,
            registry=None,
        )
        self._pushed: dict[Key, Series] = {}
        self._lock = threading.Lock()

    def push(self) -> None:
        with self._lock:
            now = self.counters.snapshot()
            for key, counts in now.items():
                before = self._pushed.get(key, Series())
                for outcome, value, old in zip(
                    OUTCOMES, counts.outcomes, before.outcomes, strict=True
                ):
                    if value > old:
                        self.requests.labels(*key, outcome).inc(value - old)
                for family, histogram, old_histogram in (
                    (self.queue, counts.queue, before.queue),
                    (self.compute, counts.compute, before.compute),
                ):
                    gained = histogram.minus(old_histogram)
                    if not any(gained.counts):
                        continue
                    # prometheus_client has no bulk observe: its child keeps one value per
                    # bucket (not cumulative) and one for the sum, as observe() adds them.
                    child = family.labels(*key)
                    child._sum.inc(gained.total)
                    for bucket, count in zip(child._buckets, gained.counts, strict=True):
                        if count:
                            bucket.inc(count)
            self._pushed = now


class ServingMetrics:
    """The app's own registry, so several apps in one process never collide. The inference
    path counts in ``counters`` (``app.serving.counters``), read at scrape time; with several
    gateway processes, each pushes its counts to the shared directory every second and
    ``/metrics`` in any of them sums them all."""

    def __init__(self, cache: SessionCache, settings: Settings, counters: ServingCounters) -> None:
        self.registry = CollectorRegistry()
        self.counters = counters
        shared = shared_metrics_dir() is not None
        own = None if shared else self.registry  # shared: read back through the collector
        self.log_dropped = Counter(
            "kiln_request_log_dropped",
            "Sampled requests not logged: the gateway's monitor queue "
            "(KILN_MONITOR_QUEUE_MB) or log buffer (KILN_LOG_BUFFER_MB) was full",
            registry=own,
        )
        self.drift_dropped = Counter(
            "kiln_drift_samples_dropped",
            "Requests drift sampled but did not count: the gateway's monitor queue "
            "(KILN_MONITOR_QUEUE_MB) was full",
            registry=own,
        )
        self.refused_below = Counter(
            "kiln_refused_below",
            "Client input that a layer under the API refused (no "
            "boundary check caught it first), answered 422, by layer",
            ["layer"],
            registry=own,
        )
        self.shared_push: _SharedPush | None = None
        if shared:
            MultiProcessCollector(self.registry)
            self.shared_push = _SharedPush(counters)
            loaded = Gauge(
                "kiln_models_loaded",
                "ONNX sessions loaded",
                registry=None,
                multiprocess_mode="livesum",
            )
            loaded_bytes = Gauge(
                "kiln_models_loaded_bytes",
                "Bytes of the loaded ONNX models",
                registry=None,
                multiprocess_mode="livesum",
            )

            def models_changed(models: list[LoadedModel]) -> None:
                loaded.set(len(models))
                loaded_bytes.set(sum(model.size_bytes for model in models))

            cache.on_change = models_changed
        else:
            self.registry.register(_InferenceCollector(counters))
        self.registry.register(_StateCollector(None if shared else cache, settings))

    async def push_shared(self) -> None:
        """Push this process's counts to the shared metrics every ``PUSH_S`` (a task for the
        gateway's lifespan; nothing to do for a gateway on its own)."""
        if self.shared_push is None:
            return
        while True:
            await asyncio.sleep(PUSH_S)
            await asyncio.to_thread(self.shared_push.push)

    def push_now(self) -> None:
        if self.shared_push is not None:
            self.shared_push.push()


@router.get("/metrics", include_in_schema=True, response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition: open, or with ``KILN_METRICS_TOKEN`` set only for
    ``Authorization: Bearer <token>`` (it lists every model and version)."""
    state = gateway_of(request.app)
    check_metrics_token(state.settings, request.headers.get("authorization", ""))
    state.metrics.push_now()  # this process's own counts, current (the others': within PUSH_S)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def check_metrics_token(settings: Settings, authorization: str) -> None:
    """Unauthorized unless ``/metrics`` is open or ``authorization`` bears its token."""
    token = settings.metrics_token.get_secret_value()
    if not token:
        return
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <KILN_METRICS_TOKEN>'")

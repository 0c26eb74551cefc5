"""GET /metrics in Prometheus format: inference traffic per model and version (queue and
compute time apart), loaded models and their bytes, jobs by state."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from app.api.state import gateway_of
from app.contracts.enums import JobStatus
from app.contracts.traffic import DriftReport, ShadowStats
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import Unauthorized
from app.jobs.repository import JobRepository
from app.registry import monitoring
from app.serving.runtime import LoadedModel, SessionCache

router = APIRouter(tags=["metrics"])

_LABELS = ("model", "version", "protocol")
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


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


class ServingMetrics:
    """The app's own registry, so several apps in one process never collide. With several
    gateway processes, every process writes its series to the shared directory and
    ``/metrics`` in any of them sums them all."""

    def __init__(self, cache: SessionCache, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        shared = shared_metrics_dir() is not None
        own = None if shared else self.registry  # shared: read back through the collector
        self.requests = Counter(
            "kiln_inference_requests",
            "Inference requests by outcome",
            [*_LABELS, "outcome"],
            registry=own,
        )
        self.queue = Histogram(
            "kiln_inference_queue_seconds",
            "Wait before the work started",
            _LABELS,
            buckets=_BUCKETS,
            registry=own,
        )
        self.compute = Histogram(
            "kiln_inference_compute_seconds",
            "onnxruntime run time",
            _LABELS,
            buckets=_BUCKETS,
            registry=own,
        )
        self.log_dropped = Counter(
            "kiln_request_log_dropped",
            "Sampled requests not logged: the gateway's log buffer was full",
            registry=own,
        )
        self.refused_below = Counter(
            "kiln_refused_below",
            "Client input that a layer under the API refused (no "
            "boundary check caught it first), answered 422, by layer",
            ["layer"],
            registry=own,
        )
        if shared:
            MultiProcessCollector(self.registry)
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
        self.registry.register(_StateCollector(None if shared else cache, settings))
        # A success's three series by (model, version, protocol), looked up once: labels()
        # costs more than the increment. Versions are finite, so this is bounded.
        self._succeeded: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}

    def succeeded(
        self, model: str, version: int, protocol: str, *, queue_s: float, compute_s: float
    ) -> None:
        series = self._succeeded.get((model, version, protocol))
        if series is None:
            labels = (model, str(version), protocol)
            series = self._succeeded.setdefault(
                (model, version, protocol),
                (
                    self.requests.labels(*labels, "ok"),
                    self.queue.labels(*labels),
                    self.compute.labels(*labels),
                ),
            )
        series[0].inc()
        series[1].observe(queue_s)
        series[2].observe(compute_s)

    def failed(self, model: str, version: int | None, protocol: str, status: int) -> None:
        outcome = "client_error" if status < 500 else "server_error"
        self.requests.labels(
            model, "" if version is None else str(version), protocol, outcome
        ).inc()


@router.get("/metrics", include_in_schema=True, response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition: open, or with ``KILN_METRICS_TOKEN`` set only for
    ``Authorization: Bearer <token>`` (it lists every model and version)."""
    state = gateway_of(request.app)
    check_metrics_token(state.settings, request.headers.get("authorization", ""))
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

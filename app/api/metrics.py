"""GET /metrics in Prometheus format: inference traffic per model and version (queue and
compute time apart), loaded models and their bytes, jobs by state."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from app.config import Settings
from app.db import session_scope
from app.jobs.repository import JobRepository
from app.serving.runtime import SessionCache
from app.tables import JobStatus

router = APIRouter(tags=["metrics"])

_LABELS = ("model", "version", "protocol")
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _StateCollector(Collector):
    """Values read at scrape time: the session cache and the jobs table."""

    def __init__(self, cache: SessionCache, settings: Settings) -> None:
        self.cache = cache
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        loaded = self.cache.loaded()
        yield GaugeMetricFamily("kiln_models_loaded", "ONNX sessions loaded", value=len(loaded))
        yield GaugeMetricFamily("kiln_models_loaded_bytes", "Bytes of the loaded ONNX models",
                                value=sum(model.size_bytes for model in loaded))
        jobs = GaugeMetricFamily("kiln_jobs", "Jobs by state", labels=["status"])
        with session_scope(self.settings.database_url) as session:
            counts = JobRepository(session).counts_by_status()
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        yield jobs


class ServingMetrics:
    """The app's own registry, so several apps in one process never collide."""

    def __init__(self, cache: SessionCache, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("kiln_inference_requests", "Inference requests by outcome",
                                [*_LABELS, "outcome"], registry=self.registry)
        self.queue = Histogram("kiln_inference_queue_seconds", "Wait before the work started",
                               _LABELS, buckets=_BUCKETS, registry=self.registry)
        self.compute = Histogram("kiln_inference_compute_seconds", "onnxruntime run time",
                                 _LABELS, buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(cache, settings))

    def succeeded(self, model: str, version: int, protocol: str, *, queue_s: float,
                  compute_s: float) -> None:
        labels = (model, str(version), protocol)
        self.requests.labels(*labels, "ok").inc()
        self.queue.labels(*labels).observe(queue_s)
        self.compute.labels(*labels).observe(compute_s)

    def failed(self, model: str, version: int | None, protocol: str, status: int) -> None:
        outcome = "client_error" if status < 500 else "server_error"
        self.requests.labels(model, "" if version is None else str(version), protocol,
                             outcome).inc()


@router.get("/metrics", include_in_schema=True, response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition (open, like the health routes)."""
    collected: ServingMetrics = request.app.state.metrics
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)

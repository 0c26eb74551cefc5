"""The serving page's numbers: per model, requests per second, error rate and latency
percentiles of each version over time, the shadow apart and the split beside them (the
gateways' per-second counters, as ``GET /v1/models/{name}/serving/stats`` answers them);
and the totals since this gateway started, read from the same Prometheus registry
``/metrics`` exposes: requests by outcome, and queue and compute time, per model version."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from app.api.serving_stats import ServingStats, model_stats, window
from app.core.db import Session
from app.core.errors import NotFound
from app.registry import traffic
from app.registry.service import get_model
from app.serving.seconds_shared import SharedSeconds
from app.ui import monitoring_charts


@dataclass
class ModelTraffic:
    """One model's section of the page: its series and their charts."""

    stats: ServingStats
    figures: dict[str, monitoring_charts.Figure]

    @property
    def keyed(self) -> dict[str, monitoring_charts.Figure]:
        """Its figures named apart from other models' (the page holds them all)."""
        return {f"{self.stats.model}:{key}": figure for key, figure in self.figures.items()}


def model_traffic(session: Session, shared: SharedSeconds, seconds: int) -> list[ModelTraffic]:
    """Every model that served in the last ``seconds`` seconds, by name."""
    since, seconds = window(seconds)
    summed, processes = shared.read(None, since, seconds)
    sections = []
    for name in sorted({key[0] for key, counts in summed.items() if key[0] and counts.any()}):
        try:
            policy = traffic.serving_policy(session, get_model(session, name))
        except NotFound:  # counted by an earlier registry (a test's database, say)
            continue
        stats = model_stats(name, policy, summed, since, seconds, processes)
        sections.append(ModelTraffic(stats, monitoring_charts.serving_figures(stats)))
    return sections


@dataclass
class ServingRow:
    model: str
    version: str
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    compute_s: float = 0.0
    queue_s: float = 0.0
    measured: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> count <=

    @property
    def mean_compute_ms(self) -> float | None:
        return 1000 * self.compute_s / self.measured if self.measured else None

    @property
    def mean_queue_ms(self) -> float | None:
        return 1000 * self.queue_s / self.measured if self.measured else None

    @property
    def p95_compute_ms(self) -> float | None:
        """The upper bound of the histogram bucket that holds the 95th percentile."""
        if not self.measured:
            return None
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= 0.95 * self.measured:
                return 1000 * bound
        return None


def serving_rows(registry: CollectorRegistry) -> list[ServingRow]:
    """One row per model and version that has had a request since the gateway started."""
    rows: dict[tuple[str, str], ServingRow] = {}

    def row(labels: dict[str, str]) -> ServingRow:
        key = (labels.get("model", ""), labels.get("version", ""))
        return rows.setdefault(key, ServingRow(*key))

    compute_buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for family in registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "kiln_inference_requests_total":
                outcome = labels.get("outcome")
                target = row(labels)
                if outcome == "ok":
                    target.ok += int(sample.value)
                elif outcome == "client_error":
                    target.client_errors += int(sample.value)
                else:
                    target.server_errors += int(sample.value)
            elif sample.name == "kiln_inference_compute_seconds_sum":
                row(labels).compute_s += sample.value
            elif sample.name == "kiln_inference_compute_seconds_count":
                row(labels).measured += int(sample.value)
            elif sample.name == "kiln_inference_queue_seconds_sum":
                row(labels).queue_s += sample.value
            elif sample.name == "kiln_inference_compute_seconds_bucket":
                bound = float(labels["le"])
                key = (labels.get("model", ""), labels.get("version", ""))
                compute_buckets[key][bound] = compute_buckets[key].get(bound, 0) + sample.value
    for key, buckets in compute_buckets.items():
        if key in rows:
            rows[key].buckets = buckets
    return sorted(rows.values(), key=lambda r: (r.model, r.version))

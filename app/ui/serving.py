"""The serving page's numbers, read from the same Prometheus registry ``/metrics``
exposes: requests by outcome, and queue and compute time, per model version."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry


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

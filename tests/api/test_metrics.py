"""GET /metrics: what Prometheus scrapes."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from tests.conftest import register


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def test_metrics_count_requests_failures_models_and_jobs(client: TestClient, admin: dict,
                                                         settings: Settings,
                                                         classifier_onnx: Path) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    for _ in range(3):
        client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]})
    client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [[1]]})
    client.post("/v1/models/ghost/predict", headers=admin, json={"inputs": [[1]]})
    values = samples(client)
    ok = (("model", "flowers"), ("outcome", "ok"), ("protocol", "v1"), ("version", "1"))
    assert values[("kiln_inference_requests_total", ok)] == 3
    bad = (("model", "flowers"), ("outcome", "client_error"), ("protocol", "v1"),
           ("version", "1"))
    assert values[("kiln_inference_requests_total", bad)] == 1
    # Names that match no model are not labels: a caller could mint any number of them.
    ghost = (("model", ""), ("outcome", "client_error"), ("protocol", "v1"), ("version", ""))
    assert values[("kiln_inference_requests_total", ghost)] == 1
    assert not any(dict(labels).get("model") == "ghost" for _, labels in values)
    timing = (("model", "flowers"), ("protocol", "v1"), ("version", "1"))
    assert values[("kiln_inference_compute_seconds_count", timing)] == 3
    assert values[("kiln_inference_queue_seconds_count", timing)] == 3
    assert values[("kiln_models_loaded", ())] == 1
    assert values[("kiln_models_loaded_bytes", ())] == classifier_onnx.stat().st_size
    assert values[("kiln_jobs", (("status", "queued"),))] == 0

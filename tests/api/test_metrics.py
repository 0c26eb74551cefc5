"""GET /metrics: what Prometheus scrapes."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from app.core.config import Settings
from app.main import create_app
from tests.conftest import register


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_requests_failures_models_and_jobs(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    for _ in range(3):
        client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]})
    client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [[1]]})
    client.post("/v1/models/ghost/predict", headers=admin, json={"inputs": [[1]]})
    values = samples(client)
    ok = (("model", "flowers"), ("outcome", "ok"), ("protocol", "v1"), ("version", "1"))
    assert values[("kiln_inference_requests_total", ok)] == 3
    bad = (("model", "flowers"), ("outcome", "client_error"), ("protocol", "v1"), ("version", "1"))
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


def test_a_metrics_token_closes_metrics_to_everyone_else(settings: Settings) -> None:
    """With KILN_METRICS_TOKEN, /metrics (which lists every model and version) answers
    only its bearer; the rest of the gateway is unchanged."""
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    with TestClient(create_app(guarded, run_reaper=False)) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "scrape-me"},
            {"Authorization": "Basic c2NyYXBlLW1l"},
        ):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert "KILN_METRICS_TOKEN" in refused.json()["detail"]
            assert "kiln_" not in refused.text
        answered = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert answered.status_code == 200 and "kiln_inference_requests_total" in answered.text
        assert client.get("/v2/health/live").status_code == 200

"""Uploads classified bounded serve in the gateway within caps measured at upload: the rows
of a request are capped from the memory per row the probe measured (a 4xx naming
KILN_UPLOAD_REQUEST_MEMORY_MB past it), and a plain graph measures too little to cap; a
graph that stalls at float32's extremes is refused at upload. Graphs that are not bounded
run only in a sandbox: tests/security/test_hostile_graphs.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.api.test_model_upload import upload
from tests.conftest import make_settings
from tests.security.runaway_graphs import memory_per_row, stalls_on_huge_values

DEADLINE_S = 2.0
REQUEST_MEMORY_MB = 64  # two rows of memory_per_row's 24 MB


@pytest.fixture
def gateway(settings: Settings) -> Iterator[TestClient]:
    bounded = make_settings(
        settings.data_dir,
        settings.database_url,
        upload_run_timeout_s=DEADLINE_S,
        upload_request_memory_mb=REQUEST_MEMORY_MB,
    )
    with TestClient(create_app(bounded, run_reaper=False), raise_server_exceptions=False) as app:
        yield app


def infer(client: TestClient, admin: dict, name: str, rows: list[list[float]]) -> Any:
    tensor = {"name": "x", "shape": [len(rows), 3], "datatype": "FP32", "data": rows}
    return client.post(f"/v2/models/{name}/infer", headers=admin, json={"inputs": [tensor]})


def test_a_graph_that_stalls_at_float32s_extremes_is_refused_at_upload(
    gateway: TestClient, admin: dict
) -> None:
    status, body = upload(gateway, admin, stalls_on_huge_values(), name="extremes")
    assert status == 422, body
    assert "rows at float32's extremes" in body["detail"]
    assert "KILN_UPLOAD_RUN_TIMEOUT_S" in body["detail"]
    assert gateway.get("/v1/models/extremes", headers=admin).status_code == 404


def test_rows_per_request_are_capped_from_the_memory_the_probe_measured(
    gateway: TestClient, admin: dict
) -> None:
    status, version = upload(gateway, admin, memory_per_row(), name="wide")
    assert status == 201, version
    assert version["runs_in"] == "gateway" and version["config"]["graph_class"] == "bounded"
    per_row = version["config"]["bytes_per_row"]
    assert 0.9 * 24e6 <= per_row < 3 * 24e6  # 3 values x 2,000,000 floats x 4 bytes, give or take
    most = max(1, REQUEST_MEMORY_MB * 1024 * 1024 // per_row)
    assert infer(gateway, admin, "wide", [[1.0, 0.0, 0.0]] * most).status_code == 200
    refused = infer(gateway, admin, "wide", [[1.0, 0.0, 0.0]] * (most + 1))
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]
    assert f"at most {most} rows per request" in message
    assert "KILN_UPLOAD_REQUEST_MEMORY_MB" in message
    predicted = gateway.post(
        "/v1/models/wide/predict", headers=admin, json={"inputs": [[1, 0, 0]] * (most + 1)}
    )
    assert predicted.status_code == 422 and "KILN_UPLOAD_REQUEST_MEMORY_MB" in predicted.text


def test_a_model_the_platform_exported_is_not_capped(
    gateway: TestClient, admin: dict, classifier_onnx: Any
) -> None:
    """The guard is for uploads: a searched model's version has no measured row memory and
    takes the gateway's row limit (an upload of a plain graph measures too little to cap)."""
    status, version = upload(gateway, admin, classifier_onnx.read_bytes(), name="plain")
    assert status == 201, version
    assert version["config"].get("bytes_per_row") is None
    rows = [[0.1, 0.2, 0.3, 0.4]] * 1000
    answer = gateway.post("/v1/models/plain/predict", headers=admin, json={"inputs": rows})
    assert answer.status_code == 200, answer.text[:300]

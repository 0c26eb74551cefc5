"""Uploads classified bounded serve in the gateway within caps measured at upload: the rows
of a request are capped from the memory per row the probe measured (a 4xx naming
KILN_UPLOAD_REQUEST_MEMORY_MB past it), and a plain graph measures too little to cap; a
graph that stalls at float32's extremes is refused at upload. Graphs that are not bounded
run only in a sandbox: tests/security/test_hostile_graphs.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.state import gateway_of
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
    # 256 rows would not fit the probe's memory: measured at 1 row only, and registered
    assert version["footprint"]["peak_memory_b256_mb"] is None
    assert version["footprint"]["peak_memory_mb"] is not None
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


def folds_at_load(values: int) -> bytes:
    """A file of a few hundred bytes whose session holds ``values`` floats: onnxruntime folds
    the constant Expand at load, and the Gather by the input keeps it alive."""
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        numpy_helper.from_array(np.array([values, 1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Expand", ["one", "shape"], ["big"]),
        helper.make_node("ArgMax", ["x"], ["where"], axis=1, keepdims=0),
        helper.make_node("Gather", ["big", "where"], ["y"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "folds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def test_a_small_file_that_holds_much_memory_once_loaded_is_refused(
    settings: Settings, admin: dict
) -> None:
    """What a loaded upload holds is measured (not its file's size) and bounded by
    KILN_UPLOAD_MODEL_MEMORY_MB; within it, the session cache counts what it holds."""
    small = make_settings(settings.data_dir, settings.database_url, upload_model_memory_mb=64)
    with TestClient(create_app(small, run_reaper=False)) as client:
        content = folds_at_load(50_000_000)  # 200 MB of floats
        assert len(content) < 1000
        status, body = upload(client, admin, content, name="folds")
        assert status == 422, body
        assert "KILN_UPLOAD_MODEL_MEMORY_MB" in body["detail"]
        status, version = upload(client, admin, folds_at_load(2_000_000), name="fits")
        assert status == 201, version
        assert version["config"]["load_bytes"] >= 7_000_000  # 8 MB of floats, give or take
        rows = {"inputs": [[0.0, 1.0, 0.0]]}
        assert client.post("/v1/models/fits/predict", headers=admin, json=rows).status_code == 200
        [loaded] = gateway_of(client.app).sessions.loaded()  # type: ignore[arg-type]
        assert loaded.size_bytes >= 7_000_000

"""POST /v1/models/{name}/predict against real registered ONNX versions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import session_scope
from app.main import create_app
from app.tables import ModelVersion
from tests.conftest import make_settings, register

LABELS = ["setosa", "versicolor", "virginica"]


def predict(client: TestClient, headers: dict, body: object, query: str = "") -> tuple[int, dict]:
    response = client.post(f"/v1/models/flowers/predict{query}", headers=headers, json=body)
    return response.status_code, response.json()


def test_predictions_are_original_labels(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    status, body = predict(client, admin, {"inputs": [[0, 0, 0, 0], [6, 6, 6, 6]]})
    assert status == 200
    assert body["model"] == "flowers" and body["version"] == 1
    assert body["predictions"] == ["setosa", "virginica"]
    assert len(body["probabilities"]) == 2 and abs(sum(body["probabilities"][0]) - 1) < 1e-5
    assert body["classes"] == LABELS  # the class of each probability column, in order
    for row, prediction in zip(body["probabilities"], body["predictions"], strict=True):
        assert body["classes"][row.index(max(row))] == prediction


def test_default_is_production_and_version_query_pins(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    register(settings, classifier_onnx, labels=[10, 20, 30])
    default = predict(client, admin, {"inputs": [[6, 6, 6, 6]]})[1]
    assert default["version"] == 1 and default["predictions"] == ["virginica"]  # the first
    pinned = predict(client, admin, {"inputs": [[6, 6, 6, 6]]}, "?version=2")[1]
    assert pinned["version"] == 2 and pinned["predictions"] == [30]
    assert pinned["classes"] == [10, 20, 30]


BAD_BODIES = [
    ({"inputs": [[1, 2]]}, 422, "inputs[0] has 2 values; the model expects 4 features"),
    ({"inputs": []}, 422, "non-empty list of rows of 4 numbers"),
    ({"inputs": [[1, 2, "x", 4]]}, 422, "inputs[0][2] is 'x'"),
    ({"inputs": [[1, 2, None, 4]]}, 422, "inputs[0][2] is None"),
    ({"inputs": [1, 2, 3, 4]}, 422, "inputs[0] must be a list of 4 numbers"),
    ({"rows": [[1, 2, 3, 4]]}, 422, 'JSON object with "inputs"'),
    ({"inputs": [[1, 2, 3, 4]], "extra": 1}, 422, "unknown fields in body: ['extra']"),
    ({"inputs": [[1e39, 2, 3, 4]]}, 422, "outside the float32 range"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_bad_inputs_say_what_was_expected(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    body: object,
    status: int,
    message: str,
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    got_status, got = predict(client, admin, body)
    assert got_status == status
    assert message in got["detail"]
    assert predict(client, admin, {"inputs": [[0, 0, 0, 0]]})[0] == 200  # still serving


def test_invalid_json_is_400(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    response = client.post(
        "/v1/models/flowers/predict",
        content=b"{inputs: NaN}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not valid JSON")


def test_too_many_rows_and_too_big_bodies(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    rows = [[0, 0, 0, 0]] * (settings.max_predict_rows + 1)
    status, body = predict(client, admin, {"inputs": rows})
    assert status == 422 and "at most 10000 per request" in body["detail"]
    huge = b'{"inputs": [' + b"[0,0,0,0]," * (2 * 1024 * 1024) + b"[0,0,0,0]]}"
    response = client.post(
        "/v1/models/flowers/predict",
        content=huge,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and "KILN_MAX_REQUEST_MB" in response.json()["detail"]


def test_unknown_model_or_version_is_404(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    assert predict(client, admin, {"inputs": [[0, 0, 0, 0]]})[0] == 404
    register(settings, classifier_onnx, labels=LABELS)
    status, body = predict(client, admin, {"inputs": [[0, 0, 0, 0]]}, "?version=7")
    assert (status, body["detail"]) == (404, "model 'flowers' has no version 7")


def test_tampered_artifact_is_refused(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    with session_scope(settings.database_url) as session:
        session.execute(update(ModelVersion).values(sha256="0" * 64))
    status, body = predict(client, admin, {"inputs": [[0, 0, 0, 0]]})
    assert status == 503 and "does not match the sha256 recorded" in body["detail"]


def test_model_reads_and_artifact_download(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=LABELS)
    models = client.get("/v1/models", headers=admin).json()
    assert [model["name"] for model in models["items"]] == ["flowers"]
    assert client.get("/v1/models/flowers", headers=admin).json()["latest_version"] == 1
    version = client.get("/v1/models/flowers/versions/1", headers=admin).json()
    assert version["class_labels"] == LABELS and version["lineage"]["job_id"] is None
    artifact = client.get("/v1/models/flowers/versions/1/artifact", headers=admin)
    assert artifact.content == classifier_onnx.read_bytes()
    assert artifact.headers["x-content-sha256"] == version["sha256"]
    assert client.get("/v1/models/flowers/versions", headers=admin).json()["total"] == 1
    assert client.get("/v1/models/nope/versions/1", headers=admin).status_code == 404


def test_v2_tensor_element_limit(
    tmp_path: Path, database_url: str, settings: Settings, keys: dict, classifier_onnx: Path
) -> None:
    tuned = make_settings(tmp_path, database_url, max_tensor_elements=8)
    register(tuned, classifier_onnx, labels=LABELS)
    admin = {"Authorization": f"Bearer {keys['admin']}"}

    def infer(rows: int) -> httpx.Response:
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [rows, 4],
                    "datatype": "FP32",
                    "data": [0.0] * (rows * 4),
                }
            ]
        }
        return client.post("/v2/models/flowers/infer", headers=admin, json=body)

    with TestClient(create_app(tuned, run_reaper=False)) as client:
        refused = infer(3)
        assert refused.status_code == 400
        assert "has 12 elements; the limit is 8" in refused.json()["error"]
        assert infer(2).status_code == 200

"""``InferenceFastPath`` serves predict and infer ahead of FastAPI: the same answers and the
same errors as the documented routes, which still take what it does not recognise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import bearer, register

ROW = {"inputs": [[6, 6, 6, 6]]}
TENSOR = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6, 6, 6, 6]}]}


@pytest.fixture
def flowers(settings: Settings, classifier_onnx: Path) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])


def test_fast_path_and_fastapi_route_answer_alike(
    client: TestClient, admin: dict, flowers: None
) -> None:
    fast = client.post("/v1/models/flowers/predict?version=1", headers=admin, json=ROW)
    # An extra query parameter is not the fast path's business: FastAPI serves this one.
    routed = client.post("/v1/models/flowers/predict?version=1&trace=1", headers=admin, json=ROW)
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json()
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    fast_v2 = client.post("/v2/models/flowers/versions/1/infer", headers=admin, json=TENSOR)
    routed_v2 = client.post("/v2/models/flowers/versions/1/infer?x=1", headers=admin, json=TENSOR)
    assert fast_v2.json()["outputs"] == routed_v2.json()["outputs"]


@pytest.mark.parametrize("query", ["?version=0", "?version=abc", "?version=-1"])
def test_bad_version_query_is_explained(
    client: TestClient, admin: dict, flowers: None, query: str
) -> None:
    response = client.post(f"/v1/models/flowers/predict{query}", headers=admin, json=ROW)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "version"]


def test_keys_and_scopes_on_the_fast_path(
    client: TestClient, admin: dict, keys: dict, flowers: None
) -> None:
    missing = client.post("/v1/models/flowers/predict", json=ROW)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["detail"]
    wrong = client.post(
        "/v2/models/flowers/infer", json=TENSOR, headers={"Authorization": "Bearer kiln_not-a-key"}
    )
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid or revoked API key"}
    reader = client.post("/v2/models/flowers/infer", json=TENSOR, headers=bearer(keys["read"]))
    assert reader.status_code == 403 and "needs 'infer'" in reader.json()["error"]
    basic = client.post(
        "/v1/models/flowers/predict", json=ROW, headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert basic.status_code == 401
    assert (
        client.post(
            "/v1/models/flowers/predict", json=ROW, headers=bearer(keys["infer"])
        ).status_code
        == 200
    )


def test_streamed_body_over_the_limit_is_413(
    client: TestClient, admin: dict, settings: Settings, flowers: None
) -> None:
    chunk = b"[0,0,0,0]," * 100_000

    def body() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(int(settings.max_request_bytes / len(chunk)) + 2):
            yield chunk
        yield b"[0,0,0,0]]}"

    response = client.post(
        "/v1/models/flowers/predict",
        content=body(),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and "KILN_MAX_REQUEST_MB" in response.json()["detail"]
    assert client.post("/v1/models/flowers/predict", headers=admin, json=ROW).status_code == 200

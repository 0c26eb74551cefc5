"""Malformed inference bodies and headers, and integers too large for a database column:
each gets a 4xx that names the problem, is counted in /metrics, and the model keeps
serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from tests.api.test_metrics import samples
from tests.conftest import register

HUGE = "10000000000000000000000000"
ROW = [1.0, 2.0, 3.0, 4.0]


def _tensor(**overrides: object) -> dict[str, object]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ROW, **overrides}


V1_BODIES = [
    ("inhomogeneous row", {"inputs": [[1, [2], 3, 4]]}, "inputs[0][1] is [2]"),
    ("nested rows", {"inputs": [[[1], [2], [3], [4]]]}, "inputs[0][0] is [1]"),
    ("object in a row", {"inputs": [[1, {"a": 1}, 3, 4]]}, "inputs[0][1] is {'a': 1}"),
    (
        "boolean among numbers",
        {"inputs": [[1, 2, 3, 4], [1.5, True, 3, 4]]},
        "inputs[1][1] is a boolean",
    ),
]
V2_BODIES = [
    (
        "input parameters a list",
        {"inputs": [_tensor(parameters=[1])]},
        "input 'input': 'parameters' must be a JSON object",
    ),
    (
        "top-level parameters a string",
        {"inputs": [_tensor()], "parameters": "x"},
        "request: 'parameters' must be a JSON object",
    ),
    ("outputs a number", {"inputs": [_tensor()], "outputs": 5}, "'outputs' must be a list"),
    (
        "output without a name",
        {"inputs": [_tensor()], "outputs": [{"x": 1}]},
        "outputs[0] must be an object with a string 'name'",
    ),
    (
        "output parameters a string",
        {"inputs": [_tensor()], "outputs": [{"name": "output", "parameters": "x"}]},
        "outputs[0]: 'parameters' must be a JSON object",
    ),
    (
        "empty data with a huge dimension",
        {"inputs": [_tensor(shape=[0, 4611686018427387904, 4], data=[])]},
        "has a dimension of 4611686018427387904 elements; the limit is",
    ),
    (
        "binary size a string",
        {"inputs": [_tensor(parameters={"binary_data_size": "4"})]},
        "binary_data_size must be a non-negative integer",
    ),
    ("id a number", {"inputs": [_tensor()], "id": 5}, "'id' must be a string"),
    ("ragged data", {"inputs": [_tensor(data=[[1, 2], [3]])]}, "'data' is ragged"),
    (
        "boolean in FP32 data",
        {"inputs": [_tensor(data=[1.0, 2.0, False, 4.0])]},
        "data[2] is a boolean, but the datatype is FP32",
    ),
]


@pytest.fixture
def served(client: TestClient, settings: Settings, classifier_onnx: Path) -> TestClient:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    return client


def _still_serves(client: TestClient, admin: dict) -> None:
    answer = client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [ROW]})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"), [case[1:] for case in V1_BODIES], ids=[case[0] for case in V1_BODIES]
)
def test_malformed_v1_rows_get_422(
    served: TestClient, admin: dict, body: dict, message: str
) -> None:
    response = served.post("/v1/models/flowers/predict", headers=admin, json=body)
    assert response.status_code == 422 and message in response.json()["detail"]
    _still_serves(served, admin)


@pytest.mark.parametrize(
    ("body", "message"), [case[1:] for case in V2_BODIES], ids=[case[0] for case in V2_BODIES]
)
def test_malformed_v2_requests_get_400(
    served: TestClient, admin: dict, body: dict, message: str
) -> None:
    response = served.post("/v2/models/flowers/infer", headers=admin, json=body)
    assert response.status_code == 400 and message in response.json()["error"]
    _still_serves(served, admin)


@pytest.mark.parametrize("length", ["²", "٣", "-1", "1e3", " 12", "9" * 40])
def test_odd_header_lengths_get_400(served: TestClient, admin: dict, length: str) -> None:
    body = b'{"inputs": []}'
    response = served.post(
        "/v2/models/flowers/infer",
        content=body,
        headers={**admin, "Inference-Header-Content-Length": length.encode()},
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


def test_malformed_requests_are_counted(served: TestClient, admin: dict) -> None:
    for _, body, _ in V1_BODIES:
        served.post("/v1/models/flowers/predict", headers=admin, json=body)
    for _, body, _ in V2_BODIES:
        served.post("/v2/models/flowers/infer", headers=admin, json=body)
    values = samples(served)
    labels = (("model", "flowers"), ("outcome", "client_error"), ("version", "1"))

    def counted(protocol: str) -> float:
        key = tuple(sorted((*labels, ("protocol", protocol))))
        return values[("kiln_inference_requests_total", key)]

    assert counted("v1") == len(V1_BODIES) and counted("v2") == len(V2_BODIES)
    assert not any(dict(sample).get("outcome") == "server_error" for _, sample in values)


HUGE_PATHS = [
    ("GET", f"/v1/datasets/{HUGE}"),
    ("GET", f"/v1/jobs/{HUGE}"),
    ("GET", f"/v1/jobs/{HUGE}/trials"),
    ("POST", f"/v1/jobs/{HUGE}/cancel"),
    ("GET", f"/v1/models/flowers/versions/{HUGE}"),
    ("GET", f"/v1/models/flowers/versions/{HUGE}/artifact"),
    ("DELETE", f"/v1/keys/{HUGE}"),
    ("DELETE", f"/v1/models/flowers/versions/{HUGE}"),
    ("GET", "/v1/jobs?offset=62654409326644723712"),
    ("GET", "/v1/models?offset=1166115993476899400581120"),
    ("GET", f"/v1/datasets?offset={HUGE}"),
    ("GET", f"/v1/models/flowers/versions?offset={HUGE}"),
    ("GET", "/v1/jobs/2147483648"),
    ("GET", "/v1/datasets/9223372036854775808"),
]


@pytest.mark.parametrize(("method", "path"), HUGE_PATHS)
def test_huge_integers_in_paths_and_queries_get_422(
    served: TestClient, admin: dict, method: str, path: str
) -> None:
    response = served.request(method, path, headers=admin)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and "less than or equal to 2147483647" in detail[0]["msg"]
    _still_serves(served, admin)


HUGE_BODIES = [
    (
        "POST",
        "/v1/jobs",
        {"kind": "search", "dataset_id": 6706233692230320128, "model_name": "m"},
        "dataset_id",
    ),
    (
        "POST",
        "/v1/jobs",
        {
            "kind": "compress",
            "source": {"model": "m", "version": 2**31},
            "compression": {"methods": ["quantize_dynamic"]},
        },
        "version",
    ),
    (
        "POST",
        "/v1/jobs",
        {"kind": "search", "dataset_id": 1, "model_name": "m", "search": {"warm_start_job": 2**40}},
        "warm_start_job",
    ),
    ("PUT", "/v1/models/flowers/aliases/production", {"version": 2**63}, "version"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), HUGE_BODIES)
def test_huge_integers_in_bodies_get_422_naming_the_field(
    served: TestClient, admin: dict, method: str, path: str, body: dict, field: str
) -> None:
    """Ids past the 32-bit columns never reach PostgreSQL (which would refuse them)."""
    response = served.request(method, path, headers=admin, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(item["loc"][-1] == field and "2147483647" in item["msg"] for item in detail)
    _still_serves(served, admin)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/a%00b",
        "/v1/models/flowers/aliases/a%00b/history",
        "/v2/models/a%00b",
        "/v2/models/a%00b/ready",
    ],
)
def test_nul_characters_in_names_are_4xx(served: TestClient, admin: dict, path: str) -> None:
    response = served.get(path, headers=admin)
    assert response.status_code in (400, 404, 422), response.text  # /v2: 400
    answer = served.post("/v1/models/a%00b/predict", headers=admin, json={"inputs": [ROW]})
    assert answer.status_code in (404, 422), answer.text
    _still_serves(served, admin)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/flowers/predict?version=9223372036854775808",
        f"/v2/models/flowers/versions/{HUGE}/infer",
        "/v2/models/flowers/versions/2147483648/infer",
    ],
)
def test_huge_versions_on_inference_routes_get_4xx(
    served: TestClient, admin: dict, path: str
) -> None:
    body = {"inputs": [ROW]} if path.startswith("/v1") else {"inputs": [_tensor()]}
    response = served.post(path, headers=admin, json=body)
    assert response.status_code in (400, 422), response.text
    assert "2147483647" in response.text
    for version_path in (
        f"/v2/models/flowers/versions/{HUGE}",
        f"/v2/models/flowers/versions/{HUGE}/ready",
    ):
        assert served.get(version_path, headers=admin).status_code == 400
    _still_serves(served, admin)


def test_readiness_never_loads_a_model(served: TestClient, admin: dict, keys: dict) -> None:
    read_only = {"Authorization": f"Bearer {keys['read']}"}
    directory = gateway_of(served.app).directory  # type: ignore[arg-type]
    answer = served.get("/v2/models/flowers/ready", headers=read_only)
    assert answer.status_code == 200 and answer.json()["ready"] is True
    assert directory.sessions.loaded() == []
    assert served.get("/v2/models/nope/ready", headers=read_only).status_code == 404

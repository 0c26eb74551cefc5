"""POST /v1/models/{name}/versions: uploading existing ONNX models, and every refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.core.config import Settings
from app.main import create_app
from tests.conftest import make_settings


def linear_onnx(
    n_in: int = 3, n_out: int = 1, *, feature_dim: str | int | None = None, inputs: int = 1
) -> onnx.ModelProto:
    """y = x @ W with W all ones: an easy model whose answers we can predict."""
    weight = numpy_helper.from_array(np.ones((n_in, n_out), np.float32), "W")
    names = [f"x{i}" for i in range(inputs)]
    nodes = [helper.make_node("MatMul", [names[0], "W"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "linear",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", feature_dim or n_in])
            for name in names
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_out])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def upload(
    client: TestClient, headers: dict, content: bytes, name: str = "uploaded", **form: str
) -> tuple[int, dict]:
    response = client.post(
        f"/v1/models/{name}/versions",
        headers=headers,
        files={"file": ("m.onnx", content)},
        data=form,
    )
    return response.status_code, response.json()


def test_uploaded_classifier_serves_its_labels(
    client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    status, body = upload(
        client, admin, classifier_onnx.read_bytes(), labels='["setosa", "versicolor", "virginica"]'
    )
    assert status == 201, body
    assert (body["version"], body["source"], body["task"]) == (1, "upload", "classification")
    assert body["signature"]["inputs"][0]["shape"] == [-1, 4]
    assert body["latency_p50_ms"] > 0 and body["n_params"] > 0
    answer = client.post(
        "/v1/models/uploaded/predict", headers=admin, json={"inputs": [[6, 6, 6, 6]]}
    ).json()
    assert answer["predictions"] == ["virginica"]
    assert answer["classes"] == ["setosa", "versicolor", "virginica"]


def test_an_upload_without_labels_names_its_classes_by_index(
    client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    status, body = upload(client, admin, classifier_onnx.read_bytes())
    assert status == 201 and body["class_labels"] == [0, 1, 2]
    answer = client.post(
        "/v1/models/uploaded/predict", headers=admin, json={"inputs": [[6, 6, 6, 6]]}
    ).json()
    assert answer["classes"] == [0, 1, 2] and answer["predictions"] == [2]


def test_a_later_upload_does_not_take_over_serving(
    client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    first = upload(client, admin, classifier_onnx.read_bytes(), labels='["a", "b", "c"]')
    second = upload(client, admin, classifier_onnx.read_bytes(), labels='["x", "y", "z"]')
    assert first[0] == second[0] == 201 and second[1]["version"] == 2
    model = client.get("/v1/models/uploaded", headers=admin).json()
    assert model["aliases"] == {"production": 1} and model["serving_version"] == 1
    answer = client.post("/v1/models/uploaded/predict", headers=admin, json={"inputs": [[6] * 4]})
    assert answer.headers["x-kiln-version"] == "1" and answer.json()["predictions"] == ["c"]


def test_an_uploaded_models_example_is_a_row_of_numbers_that_predicts(
    client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    upload(client, admin, classifier_onnx.read_bytes())
    example = client.get("/v1/models/uploaded/versions/1/example", headers=admin)
    assert example.status_code == 200 and example.json() == {"inputs": [[0.0] * 4]}
    answer = client.post("/v1/models/uploaded/predict", headers=admin, json=example.json())
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    missing = client.get("/v1/models/uploaded/versions/9/example", headers=admin)
    assert missing.status_code == 404 and "has no version 9" in missing.json()["detail"]


def test_the_docs_publish_both_forms_of_a_predict_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]["properties"]["inputs"]
    records, rows = schema["anyOf"]
    assert records["items"]["type"] == "object"  # {"column": value | null}
    assert {"type": "null"} in records["items"]["additionalProperties"]["anyOf"]
    assert rows["items"]["type"] == "array"
    assert isinstance(schema["examples"][0][0], dict)  # the records form, first
    assert "/example" in spec["components"]["schemas"]["PredictRequest"][
        "description"
    ] or "/example" in str(body)
    answer = spec["components"]["schemas"]["PredictResponse"]["properties"]
    assert "probabilities" in answer["classes"]["description"]


def test_uploaded_regressor_returns_values(client: TestClient, admin: dict) -> None:
    status, body = upload(client, admin, linear_onnx().SerializeToString())
    assert status == 201 and body["task"] == "regression" and body["class_labels"] is None
    answer = client.post(
        "/v1/models/uploaded/predict", headers=admin, json={"inputs": [[1, 2, 3.5]]}
    ).json()
    assert answer["predictions"] == [6.5]
    assert "classes" not in answer and "probabilities" not in answer  # a regressor has none


def external_data_model() -> bytes:
    model = linear_onnx()
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    return model.SerializeToString()


def truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


BAD_MODELS = [
    ("not ONNX", lambda p: b"a,b,label\n1,2,3\n", {}, 422, "not an ONNX model"),
    ("empty", lambda p: b"", {}, 422, "file is empty"),
    ("truncated", truncated, {}, 422, "not an ONNX model (or is truncated)"),
    (
        "external data outside",
        lambda p: external_data_model(),
        {},
        422,
        "references external data (tensor 'W'); upload a single self-contained",
    ),
    (
        "no fixed feature dimension",
        lambda p: linear_onnx(feature_dim="n").SerializeToString(),
        {},
        422,
        "every dimension after the batch must be a fixed positive size",
    ),
    (
        "two inputs",
        lambda p: linear_onnx(inputs=2).SerializeToString(),
        {},
        422,
        "model has 2 inputs; exactly one is supported",
    ),
    (
        "labels not JSON",
        lambda p: p.read_bytes(),
        {"labels": "[a, b"},
        422,
        "labels: not valid JSON",
    ),
    (
        "labels miscounted",
        lambda p: p.read_bytes(),
        {"labels": '["a", "b"]'},
        422,
        "labels: 2 given but output 'output' has 3 columns",
    ),
    (
        "regression with labels",
        lambda p: linear_onnx().SerializeToString(),
        {"labels": '["a", "b"]'},
        422,
        "labels: 2 given but output 'y' has 1 columns",
    ),
]


@pytest.mark.parametrize(
    ("make", "form", "status", "message"),
    [case[1:] for case in BAD_MODELS],
    ids=[case[0] for case in BAD_MODELS],
)
def test_bad_model_is_refused_and_nothing_is_lost(
    client: TestClient,
    admin: dict,
    classifier_onnx: Path,
    make,
    form: dict,
    status: int,
    message: str,
) -> None:
    assert upload(client, admin, linear_onnx().SerializeToString(), name="kept")[0] == 201
    got_status, body = upload(client, admin, make(classifier_onnx), **form)
    assert got_status == status
    assert message in body["detail"]
    models = client.get("/v1/models", headers=admin).json()
    assert [model["name"] for model in models["items"]] == ["kept"]
    assert client.post(
        "/v1/models/kept/predict", headers=admin, json={"inputs": [[1, 1, 1]]}
    ).json()["predictions"] == [3.0]


def test_bad_model_name_and_task_conflict(
    client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    assert upload(client, admin, classifier_onnx.read_bytes(), name="-bad")[0] == 422
    upload(client, admin, linear_onnx().SerializeToString(), name="values")
    status, body = upload(client, admin, classifier_onnx.read_bytes(), name="values")
    assert status == 409 and "is a regression model" in body["detail"]


@pytest.fixture
def small_limit_client(settings: Settings, admin: dict) -> Iterator[TestClient]:
    limited = make_settings(settings.data_dir, settings.database_url, max_upload_mb=0.001)
    with TestClient(create_app(limited, run_reaper=False)) as test_client:
        yield test_client


def test_model_over_the_size_limit_is_413(
    small_limit_client: TestClient, admin: dict, classifier_onnx: Path
) -> None:
    status, body = upload(small_limit_client, admin, classifier_onnx.read_bytes())
    assert status == 413 and "KILN_MAX_UPLOAD_MB" in body["detail"]

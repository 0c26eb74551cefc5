"""Model families on a real ``kiln serve`` with two worker processes: a table with words,
dates and gaps searched with LightGBM trees and with a linear model, each registered as one
ONNX file behind the table's preprocessing, served by column name on ``/v1``, ``/v2`` and
gRPC, predicted in a batch job, and the same answers from the file alone in onnxruntime;
a GBDT distilled into a network; a search across families that reports each family's best
and the reference scores; and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from app.serving.grpc_schema import SERVICE, message
from tests.e2e.test_tables import HEADER, penguin_records, penguin_rows
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes, ui_sign_in


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    yield module_kiln_server(workers=2)


def upload(server: KilnServer, target: str, rows: int = 500, seed: int = 1) -> int:
    with server.client() as client:
        response = client.post(
            "/v1/datasets",
            data={"target": target},
            files={"file": ("penguins.csv", csv_bytes(HEADER, penguin_rows(rows, seed=seed)))},
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.fixture(scope="module")
def species(server: KilnServer) -> int:
    return upload(server, "species")


def search(server: KilnServer, body: dict[str, Any]) -> dict[str, Any]:
    with server.client() as client:
        response = client.post("/v1/jobs", json={"kind": "search", **body})
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]))
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    return {**job["result"], "job_id": job["id"]}


@pytest.fixture(scope="module")
def trees(server: KilnServer, species: int) -> dict[str, Any]:
    return search(
        server,
        {
            "dataset_id": species,
            "model_name": "trees",
            "search": {"families": ["gbdt"], "max_trials": 2, "seed": 1, "validation": "holdout"},
            "compression": {
                "methods": [
                    {"method": "distill", "epochs": 15},
                    "quantize_dynamic",
                    "prune_structured",
                ]
            },
        },
    )


def alone(onnx: bytes, batch: list[dict[str, Any]]) -> np.ndarray:
    """The downloaded file run in plain onnxruntime on raw columns."""
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        column = [record.get(value.name) for record in batch]
        if value.type == "tensor(float)":
            feeds[value.name] = np.array(
                [np.nan if v is None else v for v in column], dtype=np.float32
            ).reshape(-1, 1)
        else:
            text = ["" if v is None else str(v) for v in column]
            feeds[value.name] = np.array(text, dtype=object).reshape(-1, 1)
    return np.asarray(session.run(None, feeds)[0])


def test_gbdt_is_registered_served_and_the_file_alone_agrees(
    server: KilnServer, trees: dict[str, Any]
) -> None:
    version = trees["version"]
    assert trees["plan"]["families"] == ["gbdt"]
    assert trees["metrics"]["accuracy"] > 0.7
    assert trees["metrics"]["onnx_max_abs_diff"] <= 1e-4  # checked against LightGBM itself
    batch = penguin_records(penguin_rows(40, seed=77))
    with server.client() as client:
        stored = client.get(f"/v1/models/trees/versions/{version}").json()
        assert stored["config"]["family"] == "gbdt"
        assert "weights_key" not in stored["config"]  # no torch weights
        assert "it is a gbdt model" in stored["config"]["untrainable"]
        assert stored["latency_p50_ms"] > 0 and stored["size_bytes"] > 0
        answer = client.post(f"/v1/models/trees/predict?version={version}", json={"inputs": batch})
        assert answer.status_code == 200, answer.text
        assert answer.headers  # served like any version
        onnx = client.get(f"/v1/models/trees/versions/{version}/artifact").content
    probabilities = np.array(answer.json()["probabilities"])
    np.testing.assert_allclose(probabilities, alone(onnx, batch), atol=1e-5)
    truth = [row[-1] for row in penguin_rows(40, seed=77)]
    hits = np.mean([p == t for p, t in zip(answer.json()["predictions"], truth, strict=True)])
    assert hits > 0.7


def test_gbdt_answers_on_v2_and_grpc_as_on_v1(server: KilnServer, trees: dict[str, Any]) -> None:
    version = trees["version"]
    batch = penguin_records(penguin_rows(8, seed=5))
    for record in batch:  # JSON has no NaN: /v2's FP32 data holds numbers only
        record["bill_length_mm"] = record["bill_length_mm"] or 44.0
    with server.client() as client:
        v1 = client.post(f"/v1/models/trees/predict?version={version}", json={"inputs": batch})
        inputs = []
        for name in HEADER[1:-1]:
            column = [record.get(name) for record in batch]
            if name in ("bill_length_mm", "flipper_mm"):
                data: list[Any] = [None if v is None else float(v) for v in column]
                inputs.append({"name": name, "shape": [8, 1], "datatype": "FP32", "data": data})
            else:
                data = ["" if v is None else str(v) for v in column]
                inputs.append({"name": name, "shape": [8, 1], "datatype": "BYTES", "data": data})
        v2 = client.post(f"/v2/models/trees/versions/{version}/infer", json={"inputs": inputs})
    assert v2.status_code == 200, v2.text
    expected = np.array(v1.json()["probabilities"])
    np.testing.assert_allclose(
        np.array(v2.json()["outputs"][0]["data"]).reshape(expected.shape), expected, atol=1e-6
    )
    request = message("ModelInferRequest")(model_name="trees", model_version=str(version))
    for spec in inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[8, 1])
        if spec["datatype"] == "FP32":
            tensor.contents.fp32_contents.extend(
                [float("nan") if v is None else v for v in spec["data"]]
            )
        else:
            tensor.contents.bytes_contents.extend([v.encode() for v in spec["data"]])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        infer = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        answer = infer(request, metadata=[("authorization", f"Bearer {server.key}")], timeout=30)
    [output] = answer.outputs
    values = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32)
    np.testing.assert_allclose(values.reshape(list(output.shape)), expected, atol=1e-6)


def test_gbdt_batch_prediction(server: KilnServer, trees: dict[str, Any], species: int) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "predict",
                "model": "trees",
                "dataset_id": species,
                "key_columns": ["id"],
            },
        )
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]))
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["rows"] == 500


def test_gbdt_distilled_into_a_network(server: KilnServer, trees: dict[str, Any]) -> None:
    table = trees["compression"]
    [row] = [r for r in table["rows"] if r["method"] == "distill"]
    with server.client() as client:
        student = client.get(f"/v1/models/trees/versions/{row['version']}").json()
    assert student["config"]["architecture"] is not None  # a network, with torch weights
    assert student["config"]["weights_key"] is not None
    assert student["lineage"]["parent"] == {"model": "trees", "version": trees["version"]}
    assert student["metrics"]["accuracy"] > 0.6
    # What cannot run on trees was skipped, and the result says why.
    skipped = {entry["chain"][0]: entry["reason"] for entry in table["skipped"]}
    assert set(skipped) == {"quantize_dynamic", "prune_structured"}
    assert "is a tree ensemble" in skipped["quantize_dynamic"]
    assert "needs torch weights" in skipped["prune_structured"]
    assert {row["method"] for row in table["rows"]} == {None, "distill"}


def test_linear_regression_end_to_end(server: KilnServer) -> None:
    dataset = upload(server, "flipper_mm", rows=400, seed=4)
    result = search(
        server,
        {
            "dataset_id": dataset,
            "model_name": "flippers",
            "search": {"families": ["linear"], "max_trials": 2, "seed": 1},
        },
    )
    assert result["metrics"]["onnx_max_abs_diff"] <= 1e-4
    assert result["metrics"]["rmse"] < 10  # flipper length follows species (sd 6 mm)
    reference = result["selection"]["reference"]
    assert reference["metric"] == "rmse" and reference["linear_trial"] is not None
    assert reference["winner"] < reference["baseline"]
    batch = penguin_records(penguin_rows(10, seed=8))
    for record, row in zip(batch, penguin_rows(10, seed=8), strict=True):
        del record["flipper_mm"]  # the target
        record["species"] = row[-1]
    with server.client() as client:
        answer = client.post("/v1/models/flippers/predict", json={"inputs": batch})
        onnx = client.get(f"/v1/models/flippers/versions/{result['version']}/artifact").content
    assert answer.status_code == 200, answer.text
    predicted = np.array(answer.json()["predictions"], dtype=np.float64).reshape(-1, 1)
    np.testing.assert_allclose(predicted, alone(onnx, batch), rtol=1e-5)


def test_a_search_across_families_reports_each_and_the_references(
    server: KilnServer, species: int
) -> None:
    result = search(
        server,
        {
            "dataset_id": species,
            "model_name": "mixed",
            "search": {
                "families": ["mlp", "gbdt", "linear"],
                "algorithm": "tpe",
                "max_trials": 4,
                "seed": 2,
                "validation": "holdout",
                "max_ensemble": 3,
                "space": {"n_layers": 1, "width": 16, "epochs": 10},
            },
        },
    )
    families = {entry["family"]: entry for entry in result["selection"]["families"]}
    assert set(families) == {"mlp", "gbdt", "linear"}
    # the portfolio's starting points run first, round robin: linear, gbdt, mlp, gbdt
    assert families["linear"]["trials"] >= 1 and families["gbdt"]["trials"] >= 2
    assert sum(entry["trials"] for entry in families.values()) == 4
    reference = result["selection"]["reference"]
    assert reference["linear_trial"] == families["linear"]["best_trial"]
    assert reference["baseline"] < reference["winner"]
    with server.client() as client:
        ui_sign_in(client, server.key)
        page = client.get(f"/ui/models/mixed?version={result['version']}")
        job_page = client.get(f"/ui/jobs/{result['job_id']}")
    assert page.status_code == 200, page.text
    assert "Majority class" in page.text and "Linear model" in page.text
    assert job_page.status_code == 200, job_page.text
    for family in ("mlp", "gbdt", "linear"):
        assert f'data-family="{family}"' in job_page.text
    assert "a linear model" in job_page.text and "the majority class" in job_page.text


@pytest.mark.parametrize(
    ("search_spec", "message"),
    [
        ({"families": ["cnn"]}, "cnn needs image-shaped rows"),
        ({"families": ["gbdt", "gbdt"]}, "a family is listed twice"),
        ({"families": ["gbdt", "mlp"], "algorithm": "grid"}, "a grid search covers one family"),
        ({"families": ["trees"]}, "families"),
        ({"families": ["linear"], "space": {"width": 8}}, "search.space.width: unknown dimension"),
        ({"families": ["gbdt"], "space": {"gbdt_num_leaves": 0}}, "search.space.gbdt_num_leaves"),
    ],
)
def test_family_refusals(
    server: KilnServer, species: int, search_spec: dict[str, Any], message: str
) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": species,
                "model_name": "x",
                "search": search_spec,
            },
        )
    assert response.status_code == 422, response.text
    assert message in response.text


def test_a_gbdt_cannot_be_fine_tuned_pruned_or_quantized(
    server: KilnServer, trees: dict[str, Any], species: int
) -> None:
    source = {"model": "trees", "version": trees["version"]}
    with server.client() as client:
        tuned = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": species,
                "model_name": "trees",
                "search": {"init_from": source},
            },
        )
        pruned = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": source,
                "dataset_id": species,
                "compression": {"methods": ["prune_structured"]},
            },
        )
        quantized = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": source,
                "compression": {"methods": ["quantize_dynamic"]},
            },
        )
    assert tuned.status_code == 422 and "it is a gbdt model" in tuned.json()["detail"]
    assert pruned.status_code == 422 and "it is a gbdt model" in pruned.json()["detail"]
    assert quantized.status_code == 422, quantized.text
    assert "is a tree ensemble" in quantized.json()["detail"]

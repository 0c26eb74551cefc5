"""Compression through ``POST /v1/jobs`` on a real ``kiln serve`` with two worker processes:
a search that compresses its winner with every method, a compress job on an uploaded ONNX
model (int8 served, distilled student), lineage, the report and the recommendation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest

from app.compression.choose import SIZE_TIE
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

SMALL_SPACE = {
    "n_layers": 2,
    "width": {"low": 32, "high": 64, "log": True},
    "epochs": 8,
    "batch_size": 32,
    "patience": 0,
}
EVERY_METHOD: list[Any] = [
    {"method": "prune_structured", "ratio": 0.5, "fine_tune_epochs": 4},
    {"method": "prune_structured", "importance": "taylor", "fine_tune_epochs": 2},
    {"method": "prune_unstructured", "sparsity": 0.7, "fine_tune_epochs": 3},
    {"method": "distill", "epochs": 8},
    "quantize_dynamic",
    {"method": "quantize_static", "calibration_rows": 64},
    "fp16",
    {"method": "select_features", "keep": 0.5, "fine_tune_epochs": 3},
    [
        {"method": "select_features", "by": "permutation", "fine_tune_epochs": 2},
        {"method": "prune_structured", "importance": "l2", "fine_tune_epochs": 2},
        "quantize_static",
    ],
]
MAX_DROP = 0.02


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=2)
    yield kiln


@pytest.fixture(scope="module")
def dataset_id(server: KilnServer) -> int:
    return server.upload_dataset(
        blobs_csv(n_rows=300, n_features=8, labels=("a", "b", "c"), seed=3)
    )


def post_job(server: KilnServer, body: dict[str, Any]) -> dict[str, Any]:
    with server.client() as client:
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]))
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    return dict(job)


@pytest.fixture(scope="module")
def searched(server: KilnServer, dataset_id: int) -> dict[str, Any]:
    """A search whose winner is compressed with every method (and a chain)."""
    return post_job(
        server,
        {
            "kind": "search",
            "dataset_id": dataset_id,
            "model_name": "blobs",
            "search": {
                "max_trials": 2,
                "max_epochs": 8,
                "space": SMALL_SPACE,
                "seed": 1,
                "validation": "holdout",
            },
            "compression": {"methods": EVERY_METHOD, "max_accuracy_drop": MAX_DROP},
        },
    )


def report_of(server: KilnServer, job_id: int) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_every_method_makes_a_registered_measured_variant(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    report = report_of(server, searched["id"])
    parent, variants = report["rows"][0], report["rows"][1:]
    assert parent["role"] == "parent" and parent["version"] == searched["result"]["version"]
    methods = {row["method"] for row in variants}
    assert methods == {
        "prune_structured",
        "prune_unstructured",
        "distill",
        "quantize_dynamic",
        "quantize_static",
        "fp16",
        "select_features",
    }
    # 9 entries, the chain's first step differs from the plain select_features: 11 steps.
    assert len(variants) == 11
    assert searched["progress"]["total"] == 2
    for row in variants:
        for key in (
            "size_bytes",
            "gzip_bytes",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_b64_p50_ms",
            "latency_b64_p95_ms",
            "agreement",
            "accuracy",
            "params",
        ):
            assert row[key] is not None, (row["method"], key)
        assert 0 <= row["agreement"] <= 1
    by_method = {row["method"]: row for row in variants if len(row["chain"]) == 1}
    assert by_method["prune_structured"]["params"] < parent["params"]
    assert by_method["prune_structured"]["size_bytes"] < parent["size_bytes"]
    assert by_method["prune_unstructured"]["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert by_method["prune_unstructured"]["gzip_bytes"] < parent["gzip_bytes"]
    assert by_method["quantize_dynamic"]["size_bytes"] < parent["size_bytes"] / 2
    assert by_method["fp16"]["size_bytes"] < parent["size_bytes"] * 0.7
    assert by_method["select_features"]["details"]["kept_columns"] == 4
    chain = next(row for row in variants if len(row["chain"]) == 3)
    middle = next(row for row in variants if row["version"] == chain["parent_version"])
    assert middle["chain"] == ["select_features", "prune_structured"]


def test_versions_carry_lineage_and_their_own_measurements(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    report = report_of(server, searched["id"])
    with server.client() as client:
        for row in report["rows"][1:]:
            version = client.get(f"/v1/models/blobs/versions/{row['version']}").json()
            assert version["source"] == "compression"
            assert version["lineage"]["method"] == row["method"]
            assert version["lineage"]["parent"] == {
                "model": "blobs",
                "version": row["parent_version"],
            }
            assert version["lineage"]["job_id"] == searched["id"]
            assert version["size_bytes"] == row["size_bytes"]
            assert version["metrics"]["accuracy"] == row["accuracy"]
            assert version["config"]["compression"]["chain"] == row["chain"]


def test_recommendation_honours_the_budget_and_serves(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    report = report_of(server, searched["id"])
    recommended = report["recommended_version"]
    assert searched["result"]["recommended_version"] == recommended
    parent = report["rows"][0]
    rows = {row["version"]: row for row in report["rows"]}
    chosen = rows[recommended]
    if recommended != parent["version"]:
        assert chosen["accuracy_drop"] <= MAX_DROP + 1e-9
        assert parent["accuracy"] - chosen["accuracy"] <= MAX_DROP + 1e-9
        assert chosen["smaller"] or chosen["faster"]
        qualifying = [row for row in report["rows"][1:] if row["qualifies"]]
        smallest = min(row["size_bytes"] for row in qualifying)
        near = [row for row in qualifying if row["size_bytes"] <= smallest * (1 + SIZE_TIE)]
        assert chosen["latency_p50_ms"] == min(row["latency_p50_ms"] for row in near)
    for row in report["rows"][1:]:
        if row["accuracy_drop"] > MAX_DROP:
            assert not row["qualifies"] and "max_accuracy_drop" in row["not_recommended_because"]
    for row in report["rows"]:
        assert row["recommended"] or row["not_recommended_because"], row  # each says why not
    serving = searched["result"]["serving"]
    if recommended != parent["version"]:  # set beside what serves, which it does not replace
        assert serving["version"] == recommended and serving["serving_version"] != recommended
        assert serving["promote_cli"] == f"kiln promote blobs {recommended} --gate manual"
    rows_in = np.random.default_rng(0).normal(size=(3, 8)).tolist()
    with server.client() as client:
        response = client.post(
            f"/v1/models/blobs/predict?version={recommended}", json={"inputs": rows_in}
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3


def test_uploaded_onnx_is_quantized_and_distilled_and_int8_serves(
    server: KilnServer, dataset_id: int, searched: dict[str, Any], tmp_path: Any
) -> None:
    with server.client() as client:
        onnx_bytes = client.get(
            f"/v1/models/blobs/versions/{searched['result']['version']}/artifact"
        ).content
        upload = client.post(
            "/v1/models/outside/versions",
            files={"file": ("model.onnx", onnx_bytes)},
            data={"labels": '["a", "b", "c"]'},
        )
        assert upload.status_code == 201, upload.text
        refused = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "outside", "version": 1},
                "dataset_id": dataset_id,
                "compression": {"methods": ["prune_structured"]},
            },
        )
        assert refused.status_code == 422
        assert "put distill before it" in refused.json()["detail"]
        no_dataset = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "outside", "version": 1},
                "compression": {"methods": ["quantize_dynamic"]},
            },
        )
        assert no_dataset.status_code == 422 and "dataset_id" in no_dataset.json()["detail"]
    job = post_job(
        server,
        {
            "kind": "compress",
            "source": {"model": "outside", "version": 1},
            "dataset_id": dataset_id,
            "compression": {
                "methods": [
                    "quantize_dynamic",
                    {"method": "quantize_static", "calibration_rows": 64},
                    [{"method": "distill", "epochs": 10}, "prune_structured"],
                ]
            },
        },
    )
    report = report_of(server, job["id"])
    assert [row["method"] for row in report["rows"][1:]] == [
        "quantize_dynamic",
        "quantize_static",
        "distill",
        "prune_structured",
    ]
    distilled = report["rows"][3]
    assert distilled["details"]["students_tried"] > 1  # the teacher's architecture is unknown
    int8 = report["rows"][1]
    with server.client() as client:
        artifact = client.get(f"/v1/models/outside/versions/{int8['version']}/artifact")
        graph = onnx.load_model_from_string(artifact.content).graph
        assert "MatMulInteger" in {node.op_type for node in graph.node}
        version = client.get(f"/v1/models/outside/versions/{int8['version']}").json()
        assert (
            version["signature"] == client.get("/v1/models/outside/versions/1").json()["signature"]
        )
        response = client.post(
            f"/v1/models/outside/predict?version={int8['version']}",
            json={"inputs": [[0.0] * 8, [1.0] * 8]},
        )
        assert response.status_code == 200, response.text
        assert set(response.json()["predictions"]) <= {"a", "b", "c"}
        v2 = client.post(
            f"/v2/models/outside/versions/{int8['version']}/infer",
            json={
                "inputs": [
                    {
                        "name": version["signature"]["inputs"][0]["name"],
                        "datatype": "FP32",
                        "shape": [1, 8],
                        "data": [0.5] * 8,
                    }
                ]
            },
        )
        assert v2.status_code == 200, v2.text


def test_report_is_refused_for_a_job_that_did_not_compress(
    server: KilnServer, dataset_id: int
) -> None:
    job = post_job(
        server,
        {
            "kind": "search",
            "dataset_id": dataset_id,
            "model_name": "plain",
            "search": {
                "max_trials": 1,
                "max_epochs": 8,
                "space": SMALL_SPACE,
                "validation": "holdout",
            },
        },
    )
    with server.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/report")
        assert response.status_code == 409
        assert "did not compress" in response.json()["detail"]
        assert client.get("/v1/jobs/999999/report").status_code == 404


def test_a_searched_version_is_compressed_on_its_own_test_split(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    winner = searched["result"]["version"]
    report = report_of(server, searched["id"])
    selected = next(row for row in report["rows"][1:] if row["chain"] == ["select_features"])
    job = post_job(
        server,
        {
            "kind": "compress",
            "source": {"model": "blobs", "version": winner},
            "compression": {"methods": [{"method": "prune_structured", "fine_tune_epochs": 2}]},
        },
    )
    again = post_job(
        server,
        {  # a variant that reads selected columns, compressed further
            "kind": "compress",
            "source": {"model": "blobs", "version": selected["version"]},
            "compression": {
                "methods": [{"method": "prune_structured", "ratio": 0.25, "fine_tune_epochs": 2}]
            },
        },
    )
    with server.client() as client:
        registered = client.get(f"/v1/models/blobs/versions/{winner}").json()
        first = report_of(server, job["id"])
        # No dataset_id: the source's own dataset and split, so the parent scores exactly
        # what the search measured on its held-out rows.
        assert first["rows"][0]["accuracy"] == registered["metrics"]["accuracy"]
        assert job["dataset_id"] == registered["lineage"]["dataset_id"]
        serving = job["result"]["serving"]  # the search's first version still serves
        assert serving["serving_version"] == winner and not serving["took_alias"]
        if first["recommended_version"] != winner:  # measured on the rows the winner was
            assert serving["version"] == first["recommended_version"] and serving["same_rows"]
        second = report_of(server, again["id"])
        pruned = second["rows"][1]
        version = client.get(f"/v1/models/blobs/versions/{pruned['version']}").json()
        assert version["lineage"]["parent"] == {"model": "blobs", "version": selected["version"]}
        assert version["config"]["columns"] == selected["details"]["columns"]
        artifact = client.get(f"/v1/models/blobs/versions/{pruned['version']}/artifact")
        graph = onnx.load_model_from_string(artifact.content).graph
        assert "Gather" in {node.op_type for node in graph.node}
        assert version["signature"]["inputs"][0]["shape"] == [-1, 8]

"""``POST /v1/jobs`` refuses a compression it cannot run with a 422 that names the field
(or the chain step), and stores nothing; ``/report`` answers 404/409 when there is none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.contracts.signature import VersionConfig
from app.core.config import Settings
from tests.conftest import register
from tests.helpers import blobs_csv


@pytest.fixture
def dataset_id(client: TestClient, admin: dict) -> int:
    response = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("blobs.csv", blobs_csv(n_features=4, labels=("a", "b", "c")))},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def post_compress(client: TestClient, admin: dict, **body: Any) -> Any:
    return client.post("/v1/jobs", headers=admin, json={"kind": "compress", **body})


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (
            ["prune_structured"],
            "methods[0][0] (prune_structured) needs torch weights, but "
            "version 1 of 'flowers' has no torch weights",
        ),
        (
            [["quantize_dynamic", "select_features"]],
            "needs torch weights, but it follows a graph rewrite; put distill before it",
        ),
        (
            ["share_weights"],
            "methods[0][0] (share_weights) needs torch weights, but version 1 of "
            "'flowers' has no torch weights",
        ),
        (
            [["distill", "binarize", "fp16"]],
            "methods[0][2] (fp16): the model is already quantized earlier in this chain",
        ),
        (
            [["distill", "quantize_dynamic", "share_weights"]],
            "methods[0][2] (share_weights) needs torch weights, but it follows a graph",
        ),
        ([{"method": "share_weights", "bits": 9}], "less than or equal to 8"),
    ],
)
def test_chains_the_source_cannot_take_are_named(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    dataset_id: int,
    methods: list,
    message: str,
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    response = post_compress(
        client,
        admin,
        source={"model": "flowers", "version": 1},
        dataset_id=dataset_id,
        compression={"methods": methods},
    )
    assert response.status_code == 422, response.text
    assert message in str(response.json()["detail"])
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"source": {"model": "flowers", "version": 7}},
            "source: model 'flowers' has no version 7",
        ),
        ({"source": {"model": "nothing", "version": 1}}, "source: model 'nothing' not found"),
        ({"dataset_id": None}, "dataset_id: version 1 of 'flowers' has no dataset of its own"),
        ({"dataset_id": 999}, "dataset_id: dataset 999 not found"),
    ],
)
def test_sources_and_datasets_are_checked(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    dataset_id: int,
    body: dict,
    message: str,
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    request = {
        "source": {"model": "flowers", "version": 1},
        "dataset_id": dataset_id,
        "compression": {"methods": ["quantize_dynamic"]},
        **body,
    }
    response = post_compress(client, admin, **request)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_a_source_that_does_not_fit_the_dataset_is_refused(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    wide = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("w.csv", blobs_csv(n_features=6, labels=("a", "b", "c")))},
    )
    response = post_compress(
        client,
        admin,
        source={"model": "flowers", "version": 1},
        dataset_id=wide.json()["id"],
        compression={"methods": ["quantize_dynamic"]},
    )
    assert response.status_code == 422
    assert "source: version 1 takes [4] features" in response.json()["detail"]


@pytest.mark.parametrize(
    ("compression", "field"),
    [
        ({"methods": []}, "methods"),
        ({"methods": ["shrink"]}, "methods"),
        ({"methods": [{"method": "prune_structured", "ratio": 1.5}]}, "ratio"),
        ({"methods": [{"method": "prune_unstructured", "sparsity": 0}]}, "sparsity"),
        ({"methods": [{"method": "distill", "temperature": -1}]}, "temperature"),
        ({"methods": [{"method": "quantize_static", "calibration_rows": 1}]}, "calibration_rows"),
        ({"methods": [{"method": "fp16", "bits": 8}]}, "bits"),
        ({"methods": ["fp16"], "max_accuracy_drop": 2}, "max_accuracy_drop"),
        ({"methods": ["fp16"], "prefer": "accuracy"}, "prefer"),
        ({"methods": [["quantize_dynamic", "quantize_static"]]}, "compression"),
        ({"methods": [["fp16"] * 7]}, "compression"),
    ],
)
def test_malformed_compression_fields_are_422(
    client: TestClient, admin: dict, dataset_id: int, compression: dict, field: str
) -> None:
    response = client.post(
        "/v1/jobs",
        headers=admin,
        json={
            "kind": "search",
            "dataset_id": dataset_id,
            "model_name": "m",
            "compression": compression,
        },
    )
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0


def test_a_valid_compress_job_is_queued_with_its_steps_as_progress(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path, dataset_id: int
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    response = post_compress(
        client,
        admin,
        source={"model": "flowers", "version": 1},
        dataset_id=dataset_id,
        compression={
            "methods": [
                "quantize_dynamic",
                ["distill", "prune_structured"],
                ["distill", "quantize_static"],
            ]
        },
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "compress" and job["model_name"] == "flowers"
    assert job["progress"]["total"] == 4  # the shared distill step runs once
    report = client.get(f"/v1/jobs/{job['id']}/report", headers=admin)
    assert report.status_code == 409 and "queued" in report.json()["detail"]
    assert client.get("/v1/jobs/4242/report", headers=admin).status_code == 404


def test_a_version_fitted_on_every_row_is_not_compressed_on_its_own_rows(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path, dataset_id: int
) -> None:
    """A search's default refit fits the served model on the test rows too: measuring its
    variants there would report rows it was fitted on as held out."""
    full = VersionConfig(fitted_on="all_rows", fitted_rows=120, split_seed=0)
    register(
        settings,
        classifier_onnx,
        name="full-refit",
        labels=["a", "b", "c"],
        source="search",
        config=full,
        dataset_id=dataset_id,
    )
    request = {"source": {"model": "full-refit", "version": 1}}
    methods = {"compression": {"methods": ["quantize_dynamic"]}}
    refused = post_compress(client, admin, **request, **methods)
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "source: version 1 of 'full-refit' was fitted on every labelled row" in detail
    assert "refit 'selection_only'" in detail
    # rows it never saw are fine: another dataset
    other = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("o.csv", blobs_csv(n_features=4, labels=("a", "b", "c"), seed=9))},
    )
    elsewhere = post_compress(client, admin, **request, dataset_id=other.json()["id"], **methods)
    assert elsewhere.status_code == 202, elsewhere.text

"""``POST /v1/jobs`` refuses a search it cannot run with a 422 that names the field, and
stores nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.contracts.networks import MLPConfig
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
        files={"file": ("blobs.csv", blobs_csv(n_features=4))},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def post_search(client: TestClient, admin: dict, dataset_id: int, **search: Any) -> Any:
    return client.post(
        "/v1/jobs",
        headers=admin,
        json={"kind": "search", "dataset_id": dataset_id, "model_name": "m", "search": search},
    )


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"space": {"depth": 2}}, "search.space.depth: unknown dimension"),
        ({"space": {"width": {"low": 64, "high": 8}}}, "search.space.width: empty range"),
        ({"space": {"n_layers": "two"}}, "search.space.n_layers: expected an integer"),
        ({"algorithm": "grid", "max_trials": 10}, "search.algorithm: the grid has"),
        (
            {"algorithm": "cmaes", "objectives": [{"metric": "accuracy"}, {"metric": "params"}]},
            "search.algorithm: cmaes optimises one objective",
        ),
        (
            {"objectives": [{"metric": "mae"}]},
            "search.objectives[0].metric: mae does not apply to a classification dataset",
        ),
        (
            {"objectives": [{"metric": "accuracy"}, {"metric": "accuracy"}]},
            "search.objectives[1].metric: accuracy is listed twice",
        ),
        ({"warm_start_job": 999}, "search.warm_start_job: search job 999 not found"),
        ({"init_from": {"model": "flowers", "version": 1}}, "has no torch weights"),
        ({"init_from": {"model": "nothing", "version": 1}}, "model 'nothing' not found"),
    ],
)
def test_unrunnable_searches_are_named(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    dataset_id: int,
    search: dict,
    message: str,
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])  # an uploaded-style version
    response = post_search(client, admin, dataset_id, **search)
    assert response.status_code in (404, 422), response.text
    assert message in response.json()["detail"]
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"algorithm": "bayes"}, "algorithm"),
        ({"pruner": "asha"}, "pruner"),
        ({"parallelism": 0}, "parallelism"),
        ({"max_retries": -1}, "max_retries"),
        ({"objectives": []}, "objectives"),
        ({"objectives": [{"metric": "speed"}]}, "metric"),
        ({"constraints": {"max_params": 0}}, "max_params"),
        ({"constraints": {"max_flops": 10}}, "max_flops"),
        ({"refit": "partial"}, "refit"),
        ({"refit": None}, "refit"),
    ],
)
def test_malformed_search_fields_are_422(
    client: TestClient, admin: dict, dataset_id: int, search: dict, field: str
) -> None:
    response = post_search(client, admin, dataset_id, **search)
    assert response.status_code == 422
    assert any(field in [str(part) for part in error["loc"]] for error in response.json()["detail"])


def test_grid_budget_is_the_grid_size(client: TestClient, admin: dict, dataset_id: int) -> None:
    fixed = {
        "n_layers": 1,
        "width": 16,
        "activation": {"choices": ["relu", "tanh"]},
        "dropout": 0.0,
        "batch_norm": False,
        "optimizer": "adam",
        "learning_rate": 0.01,
        "weight_decay": 1e-4,
        "l1": 0.0,
        "batch_size": 32,
        "epochs": 5,
        "lr_schedule": "none",
        "patience": 0,
    }
    response = post_search(client, admin, dataset_id, algorithm="grid", max_trials=10, space=fixed)
    assert response.status_code == 202, response.text
    assert response.json()["progress"]["total"] == 2


def test_a_search_from_a_version_fitted_on_every_row_of_its_dataset_is_refused(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path, dataset_id: int
) -> None:
    """Its weights were fitted on this dataset's test rows: the new search's held-out
    figures would count rows its starting point was fitted on."""
    network = MLPConfig(n_inputs=4, n_outputs=3, hidden=(8,))
    full = VersionConfig(
        fitted_on="all_rows",
        fitted_rows=120,
        split_seed=0,
        architecture=network,
        weights_key="test/full-refit/weights.pt",
    )
    register(
        settings,
        classifier_onnx,
        name="full-refit",
        labels=["a", "b", "c"],
        source="search",
        config=full,
        dataset_id=dataset_id,
    )
    response = post_search(
        client, admin, dataset_id, init_from={"model": "full-refit", "version": 1}
    )
    assert response.status_code == 422, response.text
    assert (
        "search.init_from: version 1 of 'full-refit' was fitted on every labelled row"
        in (response.json()["detail"])
    )
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0

"""Uploaded ONNX networks are trainable like searched ones, with a real worker: an MLP and a
CNN made elsewhere are pruned, fine-tuned and used for transfer (the MLP weight-shared too);
a graph with an operator that cannot be trained gets a 422 naming it (and still
quantizes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv, csv_bytes
from tests.training.test_from_onnx import cnn_onnx, graph_with, mlp_onnx


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    server = module_kiln_server(workers=1)
    yield server


def upload_model(kiln: KilnServer, name: str, content: bytes, labels: list[str]) -> Any:
    with kiln.client() as client:
        answer = client.post(
            f"/v1/models/{name}/versions",
            files={"file": ("m.onnx", content)},
            data={"labels": json.dumps(labels)},
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def job(kiln: KilnServer, body: dict[str, Any]) -> Any:
    with kiln.client() as client:
        answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    done = kiln.wait_for_job(int(answer.json()["id"]), timeout=400)
    assert done["status"] == "succeeded", (done["error"], kiln.log_tail())
    return done


def digits_csv() -> bytes:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return csv_bytes(
        [f"px{i}" for i in range(64)] + ["label"],
        [
            [*row.astype(int).tolist(), f"d{label}"]
            for row, label in zip(x[:500], y[:500], strict=True)
        ],
    )


def test_an_uploaded_mlp_is_pruned_shared_fine_tuned_and_transferred(kiln: KilnServer) -> None:
    version = upload_model(kiln, "their-mlp", mlp_onnx(), ["a", "b", "c"])
    assert version["config"]["weights_in_onnx"] is True
    assert version["config"]["architecture"]["hidden"] == [12, 8]
    dataset = kiln.upload_dataset(
        blobs_csv(n_rows=240, n_features=6, labels=("a", "b", "c"), seed=1)
    )
    compressed = job(
        kiln,
        {
            "kind": "compress",
            "source": {"model": "their-mlp", "version": 1},
            "dataset_id": dataset,
            "compression": {
                "methods": [
                    {"method": "prune_structured", "ratio": 0.5, "fine_tune_epochs": 5},
                    [
                        {"method": "prune_unstructured", "sparsity": 0.5, "fine_tune_epochs": 3},
                        {"method": "share_weights", "bits": 4, "fine_tune_epochs": 3},
                    ],
                ]
            },
        },
    )
    parent, *variants = compressed["result"]["compression"]["rows"]
    rows = {row["method"]: row for row in variants}
    assert {"prune_structured", "share_weights"} <= set(rows)
    assert rows["prune_structured"]["params"] < parent["params"]
    assert rows["share_weights"]["size_bytes"] < parent["size_bytes"]
    tuned = job(
        kiln,
        {
            "kind": "search",
            "dataset_id": dataset,
            "model_name": "their-mlp",
            "search": {
                "max_trials": 2,
                "space": {"epochs": 3},
                "validation": "holdout",
                "init_from": {"model": "their-mlp", "version": 1},
            },
        },
    )
    assert tuned["result"]["plan"]["init_from"] == "fine-tune"
    other = kiln.upload_dataset(blobs_csv(n_rows=160, n_features=6, labels=("p", "q"), seed=3))
    moved = job(
        kiln,
        {
            "kind": "search",
            "dataset_id": other,
            "model_name": "from-their-mlp",
            "search": {
                "max_trials": 2,
                "space": {"epochs": 3},
                "validation": "holdout",
                "init_from": {"model": "their-mlp", "version": 1},
            },
        },
    )
    assert moved["result"]["plan"]["init_from"] == "transfer: new head"
    with kiln.client() as client:
        made = client.get("/v1/models/from-their-mlp/versions/1").json()
    assert made["class_labels"] == ["p", "q"]
    assert made["config"]["architecture"]["hidden"] == [12, 8]


def test_an_uploaded_cnn_is_pruned_and_transferred(kiln: KilnServer) -> None:
    upload_model(kiln, "their-cnn", cnn_onnx(), [f"d{i}" for i in range(10)])
    dataset = kiln.upload_dataset(digits_csv())
    compressed = job(
        kiln,
        {
            "kind": "compress",
            "source": {"model": "their-cnn", "version": 1},
            "dataset_id": dataset,
            "compression": {"methods": [{"method": "prune_structured", "fine_tune_epochs": 3}]},
        },
    )
    parent, pruned = compressed["result"]["compression"]["rows"][:2]
    assert pruned["params"] < parent["params"]
    tuned = job(
        kiln,
        {
            "kind": "search",
            "dataset_id": dataset,
            "model_name": "their-cnn",
            "search": {
                "max_trials": 1,
                "space": {"epochs": 2},
                "init_from": {"model": "their-cnn", "version": 1},
            },
        },
    )
    assert tuned["result"]["plan"]["init_from"] == "fine-tune"
    binary = kiln.upload_dataset(
        csv_bytes(
            [f"px{i}" for i in range(64)] + ["label"],
            [
                [
                    *map(int, np.random.default_rng(i).integers(0, 16, 64)),
                    "odd" if i % 2 else "even",
                ]
                for i in range(120)
            ],
        )
    )
    moved = job(
        kiln,
        {
            "kind": "search",
            "dataset_id": binary,
            "model_name": "from-their-cnn",
            "search": {
                "max_trials": 1,
                "space": {"epochs": 2},
                "init_from": {"model": "their-cnn", "version": 1},
            },
        },
    )
    assert moved["result"]["plan"]["init_from"] == "transfer: new head"


def test_an_untrainable_operator_is_named_and_the_graph_still_quantizes(kiln: KilnServer) -> None:
    version = upload_model(kiln, "their-odd", graph_with("Cos").SerializeToString(), ["a", "b"])
    assert "operator 'Cos'" in version["config"]["untrainable"]
    dataset = kiln.upload_dataset(blobs_csv(n_rows=80, n_features=4, seed=2))
    with kiln.client() as client:
        refused = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "their-odd", "version": 1},
                "dataset_id": dataset,
                "compression": {"methods": ["prune_structured"]},
            },
        )
    assert refused.status_code == 422
    assert "operator 'Cos' cannot be turned into a trainable layer" in refused.json()["detail"]
    job(
        kiln,
        {
            "kind": "compress",
            "source": {"model": "their-odd", "version": 1},
            "dataset_id": dataset,
            "compression": {"methods": ["quantize_dynamic"]},
        },
    )

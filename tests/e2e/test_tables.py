"""A table as people have it (words, booleans, dates, an id column, gaps) from upload to
prediction on a real ``kiln serve`` with two worker processes: the search, the served file
that takes raw columns, ``/v1`` records with gaps and unseen values, ``tritonclient`` with
BYTES tensors, the ONNX file alone in onnxruntime, and compression that keeps the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes

HEADER = ["id", "island", "bill_length_mm", "flipper_mm", "sex", "tagged", "observed", "species"]
SPACE = {
    "n_layers": 2,
    "width": {"low": 32, "high": 64, "log": True},
    "epochs": 25,
    "batch_size": 32,
    "patience": 0,
}
MAX_DROP = 0.05


def penguin_rows(count: int, seed: int) -> list[list[Any]]:
    """Species follow the island and the bill length (with noise); some cells are empty."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        species = int(rng.integers(0, 3))
        island = (
            ["Torgersen", "Dream", "Biscoe"][species]
            if rng.random() < 0.7
            else str(rng.choice(["Torgersen", "Dream", "Biscoe"]))
        )
        bill = 38 + 5 * species + rng.normal(0, 1.5)
        flipper = 190 + 8 * species + rng.normal(0, 6)
        day = f"2023-{1 + int(rng.integers(0, 12)):02d}-{1 + int(rng.integers(0, 28)):02d}"
        rows.append(
            [
                f"N{seed}A{index}",
                island,
                "" if rng.random() < 0.08 else f"{bill:.1f}",
                f"{flipper:.0f}",
                "" if rng.random() < 0.1 else str(rng.choice(["male", "female"])),
                "TRUE" if rng.random() < 0.5 else "FALSE",
                "NA" if rng.random() < 0.05 else day,
                ["Adelie", "Chinstrap", "Gentoo"][species],
            ]
        )
    return rows


def penguin_records(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """Penguin rows as /v1 records by column name (the target left out, gaps as null)."""
    out = []
    for row in rows:
        record: dict[str, Any] = dict(zip(HEADER[:-1], row[:-1], strict=True))
        record["bill_length_mm"] = float(row[2]) if row[2] else None
        record["flipper_mm"] = float(row[3])
        record["sex"] = row[4] or None
        record["observed"] = None if row[6] == "NA" else row[6]
        out.append(record)
    return out


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=2)
    yield kiln


@pytest.fixture(scope="module")
def held_out() -> list[dict[str, Any]]:
    """Rows the platform never sees, as records: gaps as null or absent keys."""
    records = []
    for row in penguin_rows(60, seed=99):
        record: dict[str, Any] = dict(zip(HEADER[:-1], row[:-1], strict=True))
        record["bill_length_mm"] = float(row[2]) if row[2] else None
        record["flipper_mm"] = float(row[3])
        if not row[4]:
            del record["sex"]
        record["observed"] = None if row[6] == "NA" else row[6]
        records.append(record)
    return records


@pytest.fixture(scope="module")
def searched(server: KilnServer) -> dict[str, Any]:
    with server.client() as client:
        uploaded = client.post(
            "/v1/datasets",
            data={"target": "species"},
            files={"file": ("penguins.csv", csv_bytes(HEADER, penguin_rows(600, seed=1)))},
        )
        assert uploaded.status_code == 201, uploaded.text
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": uploaded.json()["id"],
                "model_name": "penguins",
                "search": {
                    "max_trials": 2,
                    "max_epochs": 25,
                    "space": SPACE,
                    "seed": 3,
                    "validation": "holdout",
                },
                "compression": {
                    "methods": [
                        "quantize_dynamic",
                        {"method": "select_features", "keep": 0.5, "fine_tune_epochs": 5},
                        {"method": "prune_structured", "ratio": 0.25, "fine_tune_epochs": 5},
                    ],
                    "max_accuracy_drop": MAX_DROP,
                },
            },
        )
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]))
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    return dict(job["result"])


def version_of(server: KilnServer, number: int) -> dict[str, Any]:
    with server.client() as client:
        return dict(client.get(f"/v1/models/penguins/versions/{number}").json())


def predict(server: KilnServer, records: list[Any], version: int | None = None) -> Any:
    query = "" if version is None else f"?version={version}"
    with server.client() as client:
        return client.post(f"/v1/models/penguins/predict{query}", json={"inputs": records})


def test_the_winner_takes_raw_columns(server: KilnServer, searched: dict[str, Any]) -> None:
    version = version_of(server, searched["version"])
    inputs = {spec["name"]: spec for spec in version["signature"]["inputs"]}
    assert set(inputs) == set(HEADER[:-1])
    assert inputs["id"] == {
        "name": "id",
        "datatype": "BYTES",
        "shape": [-1, 1],
        "kind": "ignored",
        "categories": None,
        "allows_missing": True,
        "required": False,
        "words_as_gaps": False,
    }  # an identifier: accepted, never read
    assert inputs["island"]["datatype"] == "BYTES" and inputs["island"]["kind"] == "categorical"
    assert set(inputs["island"]["categories"]) == {"Biscoe", "Dream", "Torgersen"}
    assert inputs["observed"]["kind"] == "datetime"
    assert inputs["bill_length_mm"] == {
        "name": "bill_length_mm",
        "datatype": "FP32",
        "shape": [-1, 1],
        "kind": "numeric",
        "categories": None,
        "allows_missing": True,
        "required": True,
        "words_as_gaps": False,
    }
    assert searched["metrics"]["accuracy"] > 0.7
    assert searched["metrics"]["onnx_max_abs_diff"] <= 1e-4


def test_the_example_request_is_built_from_the_signature_and_predicts(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    number = searched["version"]
    with server.client() as client:
        example = client.get(f"/v1/models/penguins/versions/{number}/example")
        assert example.status_code == 200, example.text
        [record] = example.json()["inputs"]
        assert "id" not in record  # an identifier: never read, so not in the example
        assert record["island"] in {"Biscoe", "Dream", "Torgersen"}  # the most frequent
        assert isinstance(record["bill_length_mm"], float) and 38 < record["bill_length_mm"] < 50
        assert record["observed"].startswith("2023-")
        answer = client.post(f"/v1/models/penguins/predict?version={number}", json=example.json())
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in {"Adelie", "Chinstrap", "Gentoo"}


def test_records_with_gaps_are_predicted_as_the_file_alone_predicts(
    server: KilnServer, searched: dict[str, Any], held_out: list[dict[str, Any]]
) -> None:
    response = predict(server, held_out, version=searched["version"])
    assert response.status_code == 200, response.text
    answer = response.json()
    with server.client() as client:
        onnx = client.get(f"/v1/models/penguins/versions/{searched['version']}/artifact").content
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        column = [record.get(value.name) for record in held_out]
        if value.type == "tensor(float)":
            feeds[value.name] = np.array(
                [np.nan if v is None else v for v in column], dtype=np.float32
            ).reshape(-1, 1)
        else:
            feeds[value.name] = np.array(
                ["" if v is None else v for v in column], dtype=object
            ).reshape(-1, 1)
    alone = session.run(None, feeds)[0]
    assert np.allclose(np.array(answer["probabilities"]), alone, atol=1e-5)
    truth = [row[-1] for row in penguin_rows(60, seed=99)]
    hits = np.mean([p == t for p, t in zip(answer["predictions"], truth, strict=True)])
    assert hits > 0.7


def test_unseen_values_and_all_gaps_still_predict(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    response = predict(
        server,
        [
            {
                "island": "Atlantis",
                "sex": "unknown",
                "tagged": True,
                "observed": "2031-02-29T10:00:00Z",
            },
            {},
        ],
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"island": "Dream", "beak": 3}], "inputs[0] has unknown column 'beak'"),
        ([{}, {"bill_length_mm": "long"}], "inputs[1]['bill_length_mm'] must be a number or null"),
        ([{"bill_length_mm": 1e39}], "inputs[0]['bill_length_mm'] is 1e+39: outside the float32"),
        ([{"observed": "yesterday"}], "inputs[0]['observed'] is not an ISO date"),
        ([{"island": ["Dream"]}], "inputs[0]['island'] must be text or null"),
        ([[1, 2, 3]], "this model takes text or dates, so send records"),
        (["Dream"], "inputs[0] must be an object keyed by column name"),
    ],
)
def test_bad_records_name_row_and_column(
    server: KilnServer, searched: dict[str, Any], records: list[Any], message: str
) -> None:
    response = predict(server, records)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert predict(server, [{"island": "Dream"}]).status_code == 200


def triton_inputs(records: list[dict[str, Any]], binary: bool) -> list[triton.InferInput]:
    tensors = []
    for name in HEADER[1:-1]:
        column = [record.get(name) for record in records]
        if name in ("bill_length_mm", "flipper_mm"):
            values = np.array([np.nan if v is None else v for v in column], dtype=np.float32)
            tensor = triton.InferInput(name, [len(records), 1], "FP32")
        else:
            text = ["" if v is None else str(v) for v in column]
            values = np.array(text, dtype=object)
            tensor = triton.InferInput(name, [len(records), 1], "BYTES")
        tensor.set_data_from_numpy(values.reshape(-1, 1), binary_data=binary)
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_sends_columns_as_bytes(
    server: KilnServer, searched: dict[str, Any], held_out: list[dict[str, Any]], binary: bool
) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    headers = {"Authorization": f"Bearer {server.key}"}
    metadata = client.get_model_metadata("penguins", headers=headers)
    assert {spec["name"]: spec["datatype"] for spec in metadata["inputs"]} == {
        "island": "BYTES",
        "bill_length_mm": "FP32",
        "flipper_mm": "FP32",
        "sex": "BYTES",
        "tagged": "BYTES",
        "observed": "BYTES",
    }
    result = client.infer(
        "penguins",
        triton_inputs(held_out, binary),
        headers=headers,
        outputs=[triton.InferRequestedOutput("output", binary_data=binary)],
    )
    served = int(result.get_response()["model_version"])
    expected = predict(server, held_out, version=served).json()["probabilities"]
    assert np.allclose(result.as_numpy("output"), np.array(expected), atol=1e-5)


def test_compressed_variants_keep_the_schema(
    server: KilnServer, searched: dict[str, Any], held_out: list[dict[str, Any]]
) -> None:
    rows = searched["compression"]["rows"]
    parent = version_of(server, searched["version"])["signature"]["inputs"]
    for row in rows[1:]:
        inputs = version_of(server, row["version"])["signature"]["inputs"]
        assert [spec["name"] for spec in inputs] == [spec["name"] for spec in parent]
        response = predict(server, held_out, version=row["version"])
        assert response.status_code == 200, (row["method"], response.text)
    selected = next(row for row in rows if row["method"] == "select_features")
    inputs = version_of(server, selected["version"])["signature"]["inputs"]
    optional = [spec["name"] for spec in inputs if not spec["required"]]
    assert optional and len(optional) < len(inputs)
    with server.client() as client:
        onnx = client.get(f"/v1/models/penguins/versions/{selected['version']}/artifact").content
    names = {value.name for value in ort.InferenceSession(onnx).get_inputs()}
    assert names == {spec["name"] for spec in inputs if spec["required"]}
    recommended = next(row for row in rows if row["recommended"])
    assert recommended["role"] == "parent" or recommended["qualifies"]
    assert any(row["qualifies"] for row in rows[1:])


def test_a_compress_job_needs_the_table_the_version_reads(
    server: KilnServer, searched: dict[str, Any]
) -> None:
    other = server.upload_dataset(csv_bytes(["a", "label"], [[i, i % 2] for i in range(40)]))
    with server.client() as client:
        table = client.get(f"/v1/jobs/{1}").json()["dataset_id"]
        body = {
            "kind": "compress",
            "source": {"model": "penguins", "version": searched["version"]},
            "compression": {"methods": ["fp16"]},
        }
        refused = client.post("/v1/jobs", json={**body, "dataset_id": other})
        accepted = client.post("/v1/jobs", json={**body, "dataset_id": table})
    assert refused.status_code == 422
    assert "reads the columns of a table through its own preprocessing" in refused.text
    assert accepted.status_code == 202, accepted.text
    job = server.wait_for_job(int(accepted.json()["id"]))
    assert job["status"] == "succeeded", job["error"]
    variant = job["result"]["versions"][0]
    assert predict(server, [{"island": "Dream", "sex": None}], version=variant).status_code == 200

"""Sampled request logs through the real gateway app: what is kept (the version, latency,
inputs and output; never the key), the per-model share, the bounds in bytes, and a dataset
made from the log and a labels CSV, with the refusals."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from app.main import create_app
from app.serving.request_log import ROW_GROUP_ROWS
from app.storage import get_store
from tests.conftest import make_settings, register

PREDICT = "/v1/models/flowers/predict"


def logging_app(settings: Settings, **overrides: object) -> FastAPI:
    values = {"log_sample": 1.0, **overrides}
    return create_app(
        make_settings(settings.data_dir, settings.database_url, **values), run_reaper=False
    )


@pytest.fixture
def logged(settings: Settings, classifier_onnx: Path) -> Iterator[TestClient]:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    with TestClient(logging_app(settings), raise_server_exceptions=False) as client:
        yield client


def flush(client: TestClient) -> None:
    gateway_of(client.app).monitors.flush()  # type: ignore[arg-type]


def parts(client: TestClient, admin: dict[str, str]) -> list[dict]:
    response = client.get("/v1/models/flowers/logs", headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_requests_are_logged_with_version_latency_and_output_but_never_the_key(
    logged: TestClient, admin: dict[str, str]
) -> None:
    rows = {"inputs": [[6.0, 6.0, 6.0, 6.0], [0.0, 0.0, 0.0, 0.0]]}
    mine = logged.post(PREDICT, headers={**admin, "x-request-id": "order-17"}, json=rows)
    assert mine.headers["x-request-id"] == "order-17" and mine.headers["x-kiln-version"] == "1"
    theirs = logged.post(PREDICT, headers=admin, json={"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    generated = theirs.headers["x-request-id"]
    assert len(generated) == 20  # this process's 12-digit prefix and a counter
    flush(logged)
    [part] = parts(logged, admin)
    assert part["rows"] == 3 and part["raw_bytes"] > 3 * len('{"input":[6.0,6.0,6.0,6.0]}')
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=admin)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/vnd.apache.parquet"
    secret = admin["Authorization"].removeprefix("Bearer ")
    assert secret.encode() not in download.content and b"Bearer" not in download.content
    table = pq.read_table(io.BytesIO(download.content)).to_pylist()
    first = next(r for r in table if r["request_id"] == "order-17" and r["row"] == 0)
    assert first["version"] == 1 and first["protocol"] == "v1" and first["latency_ms"] > 0
    assert first["inputs"] == '{"input":[6.0,6.0,6.0,6.0]}'
    assert first["prediction"] == "c" and len(first["output"]) == 3
    assert {r["request_id"] for r in table} == {"order-17", generated}


def test_a_part_is_written_in_row_groups_and_records_its_uncompressed_size(
    logged: TestClient, admin: dict[str, str]
) -> None:
    rows = ROW_GROUP_ROWS + 500
    response = logged.post(PREDICT, headers=admin, json={"inputs": [[6.0, 6.0, 6.0, 6.0]] * rows})
    assert response.status_code == 200, response.text
    flush(logged)
    [part] = parts(logged, admin)
    assert part["rows"] == rows
    assert part["raw_bytes"] > part["size_bytes"]  # the same row, over and over: it compresses
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=admin)
    metadata = pq.ParquetFile(io.BytesIO(download.content)).metadata  # a reader streams it
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [ROW_GROUP_ROWS, 500]


def test_the_model_decides_its_own_share(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    app = logging_app(settings, log_sample=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        row = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
        assert "x-request-id" not in client.post(PREDICT, headers=admin, json=row).headers
        flush(client)
        assert parts(client, admin) == []
        options = client.put("/v1/models/flowers/serving", headers=admin, json={"log_sample": 1.0})
        assert options.status_code == 200 and options.json()["serving"]["log_sample"] == 1.0
        for _ in range(5):
            client.post(PREDICT, headers=admin, json=row)
        flush(client)
        assert sum(part["rows"] for part in parts(client, admin)) == 5
        refused = client.put("/v1/models/flowers/serving", headers=admin, json={"log_sample": 2})
        assert refused.status_code == 422 and "log_sample" in str(refused.json()["detail"])


def test_the_log_is_bounded_in_bytes(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    app = logging_app(settings, log_max_mb=0.01, log_buffer_mb=0.002)
    with TestClient(app, raise_server_exceptions=False) as client:
        row = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
        for _ in range(6):
            for _ in range(5):
                client.post(PREDICT, headers=admin, json=row)
            flush(client)
        kept = parts(client, admin)
        counted = sum(max(part["raw_bytes"], part["size_bytes"]) for part in kept)
        assert 0 < counted <= 0.01 * 1048576
        assert len(kept) < 6  # the oldest went
        store = get_store(settings)
        assert len(list((store.root / "request-logs" / "flowers").iterdir())) == len(kept)  # type: ignore[attr-defined]
        for _ in range(400):  # more than the 2 KB buffer holds between flushes
            client.post(PREDICT, headers=admin, json=row)
        assert gateway_of(app).monitors.log.dropped > 0


def labels_csv(lines: list[str]) -> dict:
    return {"labels": ("labels.csv", "\n".join(lines).encode(), "text/csv")}


def test_a_dataset_from_the_log_and_a_labels_csv(logged: TestClient, admin: dict[str, str]) -> None:
    for index in range(40):
        value = float(index % 4)
        logged.post(
            PREDICT,
            headers={**admin, "x-request-id": f"r{index}"},
            json={"inputs": [[value, value + 1, value * 2, 1.0]]},
        )
    flush(logged)
    lines = ["request_id,label", *(f"r{i},{'yes' if i % 2 else 'no'}" for i in range(40))]
    lines += ["never-logged,yes", "r5,"]  # one unknown; a blank label leaves r5's as it was
    made = logged.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers", "target": "label"},
        files=labels_csv(lines),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["joined"] == 40 and body["unmatched"] == 1
    assert body["rows"] == 40 and body["target"] == "label"
    assert body["feature_names"] == ["input_0", "input_1", "input_2", "input_3"]
    assert body["class_labels"] == ["no", "yes"]


@pytest.mark.parametrize(
    ("fields", "lines", "message"),
    [
        ({"model": "flowers"}, ["id,label", "r1,yes"], "column 'request_id' not in the CSV header"),
        ({"model": "flowers"}, ["request_id,answer", "r1,yes"], "column 'label' not in"),
        ({"model": "flowers"}, ["request_id,label", "nope,yes"], "none of the 1 labelled"),
        ({"model": "flowers"}, ["request_id,row,label", "r1,x,yes"], "row 'x' is not a whole"),
        ({"model": "flowers"}, ["request_id,label", "r1,"], "no labelled row"),
        ({"model": "ghost"}, ["request_id,label", "r1,yes"], "model 'ghost' not found"),
        ({"model": "flowers", "target": "bad\u0000name"}, ["request_id,label"], "target"),
    ],
)
def test_from_log_refusals(
    logged: TestClient,
    admin: dict[str, str],
    fields: dict[str, str],
    lines: list[str],
    message: str,
) -> None:
    logged.post(PREDICT, headers={**admin, "x-request-id": "r1"}, json={"inputs": [[1.0] * 4]})
    flush(logged)
    response = logged.post(
        "/v1/datasets/from-log", headers=admin, data=fields, files=labels_csv(lines)
    )
    assert 400 <= response.status_code < 500, response.text
    assert message in str(response.json()["detail"])
    assert logged.get("/v1/datasets", headers=admin).json()["total"] == 0  # nothing made


def test_without_a_log_the_model_says_how_to_get_one(
    client: TestClient, admin: dict[str, str], settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    response = client.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers"},
        files=labels_csv(["request_id,label", "r1,yes"]),
    )
    assert response.status_code == 422 and "KILN_LOG_SAMPLE" in response.json()["detail"]

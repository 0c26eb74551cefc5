"""Batch prediction jobs on a real ``kiln serve`` with a real worker: a million-row CSV
whose output matches onnxruntime and per-row predict, the dataset form with Parquet
output, a table model fed by column name, a worker killed midway that resumes from its
last finished chunk, and the refusals."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import csv as arrow_csv

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes, mixed_table

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends

LABELS = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory, classifier_onnx: Path) -> Iterator[KilnServer]:
    server = module_kiln_server(workers=1, KILN_JOB_LEASE_S="5", KILN_QUEUED_RESEND_S="2")
    with server.client() as client:
        response = client.post(
            "/v1/models/flowers/versions",
            files={"file": ("m.onnx", classifier_onnx.read_bytes())},
            data={"labels": str(LABELS).replace("'", '"')},
        )
        assert response.status_code == 201, response.text
    yield server


def rows_csv(path: Path, count: int, seed: int) -> np.ndarray:
    """A CSV of ``count`` rows: an ``id`` column of text, then a, b, c, d."""
    values = np.random.default_rng(seed).normal(3, 2, size=(count, 4)).astype(np.float32)
    table = pa.table(
        {
            "id": pa.array([f"r{i}" for i in range(count)]),
            **{name: values[:, index] for index, name in enumerate("abcd")},
        }
    )
    arrow_csv.write_csv(table, path)
    return values


def expected_of(onnx: Path, values: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": values})[0]


def submit_upload(kiln: KilnServer, path: Path, **form: Any) -> dict[str, Any]:
    with kiln.client() as client, path.open("rb") as handle:
        response = client.post(
            "/v1/jobs/predict",
            files={"file": (path.name, handle)},
            data={"model": "flowers", **form},
            timeout=300,
        )
    assert response.status_code == 202, response.text
    return dict(response.json())


def output_of(kiln: KilnServer, job_id: int) -> pa.Table:
    with kiln.client() as client:
        response = client.get(f"/v1/jobs/{job_id}/output", timeout=300)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/csv"):
        return arrow_csv.read_csv(
            io.BytesIO(response.content),
            convert_options=arrow_csv.ConvertOptions(column_types={"id": pa.string()}),
        )
    return pq.read_table(io.BytesIO(response.content))


def check_matches(table: pa.Table, values: np.ndarray, expected: np.ndarray) -> None:
    assert table.column("row").to_numpy().tolist() == list(range(1, len(values) + 1))
    probabilities = np.column_stack(
        [table.column(f"probability_{label}").to_numpy() for label in LABELS]
    )
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    labels = np.asarray(LABELS)[expected.argmax(axis=1)]
    assert table.column("prediction").to_pylist() == labels.tolist()


def test_a_million_rows_match_onnxruntime_and_per_row_predict(
    kiln: KilnServer, classifier_onnx: Path, tmp_path: Path
) -> None:
    source = tmp_path / "million.csv"
    values = rows_csv(source, 1_000_000, seed=1)
    job = submit_upload(kiln, source, key_columns="id")
    assert job["progress"]["unit"] == "rows"
    final = kiln.wait_for_job(job["id"], timeout=600)
    assert final["status"] == "succeeded", (final["error"], kiln.log_tail())
    assert final["progress"]["done"] == final["progress"]["total"] == 1_000_000
    result = final["result"]
    assert result["rows"] == 1_000_000 and result["version"] == 1
    assert result["resumed_at_row"] == 0 and result["peak_rss_mb"] > 0
    table = output_of(kiln, job["id"])
    assert table.column_names[:3] == ["row", "id", "prediction"]
    assert table.column("id").to_pylist()[:3] == ["r0", "r1", "r2"]
    check_matches(table, values, expected_of(classifier_onnx, values))
    # Per-row predict agrees on rows drawn from across the file.
    picked = np.random.default_rng(2).choice(len(values), size=40, replace=False)
    with kiln.client() as client:
        for index in picked.tolist():
            answer = client.post(
                "/v1/models/flowers/predict", json={"inputs": [values[index].tolist()]}
            ).json()
            assert answer["predictions"] == [table.column("prediction")[index].as_py()]
            np.testing.assert_allclose(
                answer["probabilities"][0],
                [table.column(f"probability_{label}")[index].as_py() for label in LABELS],
                rtol=1e-5,
                atol=1e-6,
            )


def test_dataset_form_writes_parquet_with_key_columns(
    kiln: KilnServer, classifier_onnx: Path
) -> None:
    values = np.random.default_rng(3).normal(3, 2, size=(2_500, 4)).astype(np.float32)
    labels = ["x" if index % 2 else "y" for index in range(len(values))]
    dataset_id = kiln.upload_dataset(
        csv_bytes(
            ["a", "b", "c", "d", "label"],
            [[*map(float, row), label] for row, label in zip(values, labels, strict=True)],
        )
    )
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "predict",
                "model": "flowers",
                "dataset_id": dataset_id,
                "key_columns": ["label"],
                "output_format": "parquet",
                "chunk_rows": 1000,
            },
        )
    assert response.status_code == 202, response.text
    final = kiln.wait_for_job(response.json()["id"])
    assert final["status"] == "succeeded", final["error"]
    table = output_of(kiln, final["id"])
    assert table.column("label").to_pylist() == labels
    check_matches(table, values, expected_of(classifier_onnx, values))


def wait_for_rows(kiln: KilnServer, job_id: int, at_least: int) -> dict[str, Any]:
    with kiln.client() as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            if job["progress"]["done"] >= at_least and job["worker"]:
                return job
            assert job["status"] in ("queued", "running"), job
            time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {at_least} rows")


def test_a_killed_worker_resumes_from_its_last_finished_chunk(
    kiln: KilnServer, classifier_onnx: Path, tmp_path: Path
) -> None:
    source = tmp_path / "resume.csv"
    values = rows_csv(source, 400_000, seed=4)
    job = submit_upload(kiln, source, key_columns="id", chunk_rows="1000")
    running = wait_for_rows(kiln, job["id"], 40_000)
    worker = int(running["worker"].rsplit(":", 1)[1])
    os.killpg(os.getpgid(worker), signal.SIGKILL)  # the whole worker, pool and all
    final = kiln.wait_for_job(job["id"], timeout=300)
    assert final["status"] == "succeeded", (final["error"], kiln.log_tail())
    assert final["attempt"] == 2
    resumed = final["result"]["resumed_at_row"]
    assert 40_000 <= resumed < len(values) and resumed % 1000 == 0
    table = output_of(kiln, job["id"])
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(len(values))]
    check_matches(table, values, expected_of(classifier_onnx, values))
    folder = kiln.data_dir / "artifacts" / "jobs" / str(job["id"])
    assert not list(folder.glob("**/part-*")), "parts are removed once joined"
    assert list(folder.glob("attempt-2/predictions.csv"))
    # Deleting the job's files takes its output and its uploaded input; the record stays.
    with kiln.client() as client:
        deleted = client.delete(f"/v1/jobs/{job['id']}/files")
        assert deleted.status_code == 200 and deleted.json()["files_deleted_at"], deleted.text
        gone = client.get(f"/v1/jobs/{job['id']}/output")
        assert gone.status_code == 404 and "was deleted" in gone.text
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    assert not [path for path in folder.rglob("*") if path.is_file()]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "nope", "dataset_id": 1}, "model: model 'nope' not found"),
        (
            {"model": "flowers", "version": 9, "dataset_id": 1},
            "version: model 'flowers' has no version 9",
        ),
        ({"model": "flowers"}, "dataset_id: give the dataset"),
        ({"model": "flowers", "dataset_id": 999}, "dataset_id: dataset 999 not found"),
        (
            {"model": "flowers", "dataset_id": 1, "key_columns": ["nope"]},
            "key_columns: the CSV has no column(s) ['nope']",
        ),
        ({"model": "flowers", "dataset_id": 1, "chunk_rows": 5}, "chunk_rows"),
        ({"model": "flowers", "dataset_id": 1, "output_format": "xml"}, "output_format"),
    ],
)
def test_bad_submissions_are_refused(kiln: KilnServer, body: dict[str, Any], message: str) -> None:
    dataset_id = kiln.upload_dataset(
        csv_bytes(["a", "b", "c", "d", "label"], [[i, 2, 3, 4, "xy"[i % 2]] for i in range(20)])
    )
    if body.get("dataset_id") == 1:
        body = {**body, "dataset_id": dataset_id}
    with kiln.client() as client:
        before = client.get("/v1/jobs").json()["total"]
        response = client.post("/v1/jobs", json={"kind": "predict", **body})
        assert response.status_code == 422, response.text
        assert message in response.text
        assert client.get("/v1/jobs").json()["total"] == before


def test_bad_uploads_are_refused_and_bad_rows_named(kiln: KilnServer, tmp_path: Path) -> None:
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("a,b,c\n1,2,3\n")
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs/predict",
            data={"model": "flowers"},
            files={"file": ("narrow.csv", narrow.read_bytes())},
        )
        assert response.status_code == 422
        assert "takes 4 numbers per row; the CSV has 3 columns" in response.text
        response = client.post(
            "/v1/jobs/predict",
            data={"model": "flowers", "output_format": "xml"},
            files={"file": ("narrow.csv", narrow.read_bytes())},
        )
        assert response.status_code == 422 and "output_format" in response.text
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,c,d\n")
    final = kiln.wait_for_job(submit_upload(kiln, empty)["id"])
    assert final["status"] == "failed" and "'empty.csv' has no data rows" in final["error"]
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b,c,d\n" + "1,2,3,4\n" * 4 + "1,oops,3,4\n")
    job = submit_upload(kiln, broken)
    final = kiln.wait_for_job(job["id"])
    assert final["status"] == "failed"
    assert "row 5, column 'b': 'oops' is not a number" in final["error"]
    with kiln.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/output")
        assert response.status_code == 409 and "failed" in response.json()["detail"]
        assert client.get("/v1/jobs/999999/output").status_code == 404
        # The model still serves.
        served = client.post("/v1/models/flowers/predict", json={"inputs": [[1, 2, 3, 4]]})
        assert served.status_code == 200


def test_a_table_model_reads_columns_by_name(kiln: KilnServer, tmp_path: Path) -> None:
    """Numbers, a category and gaps through a searched table model: every row of the
    batch output equals /v1 predict of the same record."""
    table_csv = tmp_path / "people.csv"
    mixed_table(table_csv, rows=120)
    dataset_id = kiln.upload_dataset(table_csv.read_bytes())
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "people",
                "search": {"max_trials": 1, "max_epochs": 3, "validation": "holdout"},
            },
        )
        assert response.status_code == 202, response.text
        assert kiln.wait_for_job(response.json()["id"])["status"] == "succeeded"
        # Rows in another column order, with a key and a column the model does not read.
        source = tmp_path / "to-predict.csv"
        rows = list(csv.DictReader(table_csv.open()))
        with source.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["size", "ref", "colour", "x"])
            writer.writerows(
                [[row["size"], f"k{i}", row["colour"], row["x"]] for i, row in enumerate(rows)]
            )
        job = client.post(
            "/v1/jobs/predict",
            data={"model": "people", "key_columns": "ref"},
            files={"file": ("to-predict.csv", source.read_bytes())},
        )
        assert job.status_code == 202, job.text
        assert kiln.wait_for_job(job.json()["id"])["status"] == "succeeded"
        table = output_of(kiln, job.json()["id"])
        records = [
            {
                "x": float(row["x"]),
                "colour": row["colour"],
                "size": float(row["size"]) if row["size"] else None,
            }
            for row in rows
        ]
        answer = client.post("/v1/models/people/predict", json={"inputs": records}).json()
    assert table.column("ref").to_pylist() == [f"k{i}" for i in range(len(rows))]
    assert table.column("prediction").to_pylist() == answer["predictions"]
    probabilities = np.column_stack(
        [table.column(f"probability_{label}").to_numpy() for label in ("no", "yes")]
    )
    np.testing.assert_allclose(probabilities, answer["probabilities"], rtol=1e-5, atol=1e-6)


def test_kiln_predict_as_a_job_from_the_terminal(kiln: KilnServer, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    values = rows_csv(source, 5_000, seed=6)
    out = tmp_path / "out.csv"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("kiln")),
            "predict",
            "flowers",
            "--csv",
            str(source),
            "--job",
            "--key",
            "id",
            "--out",
            str(out),
        ],
        env={**os.environ, "KILN_URL": kiln.url, "KILN_API_KEY": kiln.key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "5000 rows predicted by job" in done.stdout
    assert "5000/5000 rows" in done.stderr
    table = arrow_csv.read_csv(out)
    assert table.num_rows == len(values) and table.column_names[:2] == ["row", "id"]


def test_the_dashboard_shows_progress_in_rows_and_serves_the_output(
    kiln: KilnServer, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    rows_csv(source, 3_000, seed=8)
    job = submit_upload(kiln, source, key_columns="id")
    assert kiln.wait_for_job(job["id"])["status"] == "succeeded"
    with httpx.Client(base_url=kiln.url, timeout=60) as browser:
        signed_in = browser.post("/ui/login", data={"key": kiln.key}, headers={"Origin": kiln.url})
        assert signed_in.status_code in (200, 303), signed_in.text
        page = browser.get(f"/ui/jobs/{job['id']}")
        assert "<dt>Rows</dt>" in page.text and "3000/3000" in page.text
        assert "3000 rows (csv)" in page.text
        output = browser.get(f"/ui/jobs/{job['id']}/output")
        assert output.status_code == 200 and output.content.startswith(b'"row","id"')
        assert browser.get("/ui/jobs/999999/output").status_code == 404


HOSTILE_KEYS = [
    '=HYPERLINK("http://evil","x")',
    "+SUM(1,2)",
    "-2+3",
    "@cmd",
    "\tlead",
    "-3.5",
    "plain",
]


def test_formula_cells_are_inert_in_csv_and_exact_in_parquet(
    kiln: KilnServer, tmp_path: Path
) -> None:
    """Key cells a spreadsheet would run (= + - @, a tab) come out with a leading ' in a
    CSV output; plain numbers and other text as they were; Parquet keeps every cell."""
    source = tmp_path / "formulas.csv"
    with source.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "a", "b", "c", "d"])
        writer.writerows([[key, 1, 2, 3, 4] for key in HOSTILE_KEYS])
    as_csv = submit_upload(kiln, source, key_columns="id")
    as_parquet = submit_upload(kiln, source, key_columns="id", output_format="parquet")
    for job in (as_csv, as_parquet):
        assert kiln.wait_for_job(job["id"])["status"] == "succeeded"
    written = output_of(kiln, as_csv["id"]).column("id").to_pylist()
    assert written == [
        "'" + HOSTILE_KEYS[0],
        "'+SUM(1,2)",
        "'-2+3",
        "'@cmd",
        "'\tlead",
        "-3.5",
        "plain",
    ]
    assert output_of(kiln, as_parquet["id"]).column("id").to_pylist() == HOSTILE_KEYS


@pytest.mark.parametrize("key", ["row", "prediction", "probability_setosa"])
def test_a_key_column_named_like_an_output_column_is_refused(
    kiln: KilnServer, tmp_path: Path, key: str
) -> None:
    source = tmp_path / "clash.csv"
    source.write_text(f"{key},a,b,c,d\nk,1,2,3,4\n")
    with kiln.client() as client:
        before = client.get("/v1/jobs").json()["total"]
        response = client.post(
            "/v1/jobs/predict",
            data={"model": "flowers", "key_columns": key},
            files={"file": ("clash.csv", source.read_bytes())},
        )
        assert response.status_code == 422, response.text
        assert f"key_columns: '{key}' is a column the output writes" in response.text
        assert client.get("/v1/jobs").json()["total"] == before

"""The serving benchmark's batch row: a predict job over a 1,000,000-row CSV on a real
worker, against onnxruntime running the same rows in this process in the job's chunks."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow as pa
from pyarrow import csv as arrow_csv

from bench.harness import HOST, free_port, server

CHUNK_ROWS = 16_384  # the job's default


def write_rows(path: Path, rows: np.ndarray) -> None:
    """An ``id`` column, then one column per feature (f0, f1, ...)."""
    table = pa.table(
        {
            "id": pa.array(np.arange(len(rows)).astype(str)),
            **{f"f{index}": rows[:, index] for index in range(rows.shape[1])},
        }
    )
    arrow_csv.write_csv(table, path)


def onnxruntime_rows_per_s(model: Path, rows: np.ndarray) -> float:
    """Rows/s of onnxruntime over ``rows`` in chunks of the job's size, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    session.run(None, {"input": rows[:CHUNK_ROWS]})
    started = time.perf_counter()
    for start in range(0, len(rows), CHUNK_ROWS):
        session.run(None, {"input": rows[start : start + CHUNK_ROWS]})
    return len(rows) / (time.perf_counter() - started)


def _seconds(job: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()


def run_job(url: str, key: str, model: str, source: Path) -> dict[str, Any]:
    """Submit the CSV as a predict job, wait for it; what it measured."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        with source.open("rb") as handle:
            submitted = client.post(
                "/v1/jobs/predict",
                data={"model": model, "key_columns": "id"},
                files={"file": (source.name, handle, "text/csv")},
            )
        submitted.raise_for_status()
        job_id = submitted.json()["id"]
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.5)
        if job["status"] != "succeeded":
            raise RuntimeError(f"batch job {job_id} {job['status']}: {job['error']}")
    result = job["result"]
    return {
        "rows": result["rows"],
        "job_s": _seconds(job),
        "predict_s": result["seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "rss_at_start_mb": result["rss_at_start_mb"],
        "output_bytes": result["output"]["size_bytes"],
        "input_bytes": source.stat().st_size,
    }


@dataclass(frozen=True)
class BatchResult:
    """The batch job's figures and onnxruntime's over the same rows."""

    rows: int
    job_s: float
    predict_s: float
    onnxruntime_rows_per_s: float
    peak_rss_mb: float
    rss_at_start_mb: float
    input_mb: float
    output_mb: float


def batch_job(scratch: Path, model: Path, test_rows: np.ndarray, count: int) -> BatchResult:
    """A predict job over ``count`` rows on the one worker of a fresh ``kiln serve``."""
    rows = np.resize(test_rows, (count, test_rows.shape[1])).astype(np.float32)
    source = scratch / f"rows-{count}.csv"
    write_rows(source, rows)
    reference = onnxruntime_rows_per_s(model, rows)
    port = free_port()
    kiln = [
        str(Path(sys.executable).parent / "kiln"),
        "serve",
        "--workers",
        "1",
        "--host",
        HOST,
        "--port",
        str(port),
        "--grpc-port",
        "0",
        "--no-access-log",
    ]
    data = scratch / f"kiln-batch-{count}"
    env = {"KILN_DATA_DIR": str(data), "KILN_ORT_THREADS": "1", "KILN_MAX_UPLOAD_MB": "4096"}
    with server(kiln, env, port, "/v2/health/ready", pinned=False):
        key = (data / "admin.key").read_text().strip()
        httpx.post(
            f"http://{HOST}:{port}/v1/models/digits/versions",
            timeout=60,
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("mlp.onnx", model.read_bytes())},
            data={"labels": json.dumps(list(range(10)))},
        ).raise_for_status()
        found = run_job(f"http://{HOST}:{port}", key, "digits", source)
    result = BatchResult(
        found["rows"],
        found["job_s"],
        found["predict_s"],
        reference,
        found["peak_rss_mb"],
        found["rss_at_start_mb"],
        found["input_bytes"] / 1048576,
        found["output_bytes"] / 1048576,
    )
    print(
        f"  batch job: {result.rows:,} rows in {result.job_s:.1f} s "
        f"({result.rows / result.job_s:,.0f} rows/s; onnxruntime {reference:,.0f} rows/s), "
        f"peak worker RSS {result.peak_rss_mb:.0f} MB"
    )
    return result

"""Scale-out with no shared disk: a gateway and two workers as separate processes, each
with its own empty data dir, sharing only PostgreSQL, Redis and an S3-compatible object
store (a real moto server). A search with parallelism 2 fans its trials over both workers,
its winner is compressed, a data-parallel search trains each trial on both workers, a batch
prediction runs, and the gateway serves every version:
every byte one process needs from another travels through the object store."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fixtures.servers import BROKER_URL, PG_URL, KilnServer, ServerFactory, stop_process
from tests.helpers import blobs_csv
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, bucket_name, s3_env

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        not (PG_URL and BROKER_URL),
        reason="machines share PostgreSQL and Redis: set KILN_TEST_DATABASE_URL and "
        "KILN_TEST_BROKER_URL (.ci/run does, in its PostgreSQL + Redis pass)",
    ),
]

KILN = str(Path(sys.executable).with_name("kiln"))


def _worker(kiln: KilnServer, data_dir: Path) -> subprocess.Popen[bytes]:
    """``kiln worker`` as on another machine: the gateway's settings, its own data dir."""
    data_dir.mkdir()
    log = (data_dir.parent / f"{data_dir.name}.log").open("ab")
    return subprocess.Popen(
        [KILN, "worker", "--concurrency", "1"],
        env={**kiln.env, "KILN_DATA_DIR": str(data_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_until_ready(logs: list[Path], timeout: float = 120) -> None:
    """Both workers listening on the broker (Celery's "ready." line), so that the search's
    trials can fan out over them rather than all run on whichever started first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(log.exists() and " ready." in log.read_text(errors="replace") for log in logs):
            return
        time.sleep(0.5)
    raise AssertionError("workers not ready:\n" + _tails(logs))


def _tails(logs: list[Path]) -> str:
    return "\n".join(
        f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:]
        for log in logs
        if log.exists()
    )


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def _post_job(kiln: KilnServer, body: dict[str, Any]) -> dict[str, Any]:
    with kiln.client() as client:
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = kiln.wait_for_job(response.json()["id"], timeout=500)
    logs = sorted(kiln.data_dir.parent.glob("worker-*.log"))
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail(), _tails(logs))
    return dict(job)


def test_gateway_and_two_workers_share_no_disk(
    tmp_path: Path, s3_endpoint: str, kiln_server: ServerFactory
) -> None:
    bucket = bucket_name()
    kiln = kiln_server(workers=0, data_dir=tmp_path / "gateway", env=s3_env(s3_endpoint, bucket))
    workers = [_worker(kiln, tmp_path / f"worker-{n}") for n in (1, 2)]
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    try:
        _wait_until_ready(logs)
        dataset_id = kiln.upload_dataset(blobs_csv(n_rows=400, labels=("a", "b", "c")))
        search = _post_job(
            kiln,
            {
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "blobs",
                "search": {
                    "max_trials": 4,
                    "refit": "selection_only",  # compressed below on its own test rows
                    "parallelism": 2,
                    "max_epochs": 20,
                    "seed": 3,
                    "validation": "holdout",
                    "space": {
                        "n_layers": {"low": 1, "high": 2},
                        "width": 64,
                        "epochs": 20,
                        "batch_size": 16,
                        "patience": 0,
                    },
                },
            },
        )
        with kiln.client() as client:
            trials = client.get(f"/v1/jobs/{search['id']}/trials").json()
        assert len({trial["worker"] for trial in trials}) == 2  # both workers trained
        winner = search["result"]["version"]

        compressed = _post_job(
            kiln,
            {
                "kind": "compress",
                "source": {"model": "blobs", "version": winner},
                "compression": {
                    "methods": [
                        "quantize_dynamic",
                        {"method": "prune_structured", "fine_tune_epochs": 2},
                    ]
                },
            },
        )
        assert compressed["result"]["versions"], compressed["result"]

        # A data-parallel trial: rank 0 on one worker, its member on the other, the work
        # passed through the bucket and the rendezvous through the broker's message.
        together = _post_job(
            kiln,
            {
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "blobs-ddp",
                "search": {
                    "max_trials": 2,
                    "data_parallel": 2,
                    "validation": "holdout",
                    "space": {
                        "n_layers": 1,
                        "width": 32,
                        "epochs": 4,
                        "batch_size": 64,
                        "patience": 0,
                    },
                },
            },
        )
        with kiln.client() as client:
            trials = client.get(f"/v1/jobs/{together['id']}/trials").json()
        assert [trial["metrics"]["train_processes"] for trial in trials] == [2, 2]

        rows = [{"f0": 0.5 * i, "f1": -0.25 * i, "f2": 1.0, "f3": i % 3} for i in range(300)]
        body = "f0,f1,f2,f3\n" + "".join(f"{r['f0']},{r['f1']},{r['f2']},{r['f3']}\n" for r in rows)
        with kiln.client() as client:
            submitted = client.post(
                "/v1/jobs/predict",
                data={"model": "blobs"},
                files={"file": ("rows.csv", body.encode())},
            )
            assert submitted.status_code == 202, submitted.text
            batch = kiln.wait_for_job(submitted.json()["id"], timeout=300)
            assert batch["status"] == "succeeded", batch["error"]
            output = client.get(f"/v1/jobs/{batch['id']}/output")
            assert output.status_code == 200, output.text
            predicted = list(csv.DictReader(io.StringIO(output.text)))
            values = [[row[name] for name in ("f0", "f1", "f2", "f3")] for row in rows]
            online = client.post("/v1/models/blobs/predict", json={"inputs": values[:50]})
            assert online.status_code == 200, online.text
            assert [p["prediction"] for p in predicted[:50]] == [
                str(label) for label in online.json()["predictions"]
            ]
            for version in [winner, *compressed["result"]["versions"]]:
                served = client.post(
                    f"/v1/models/blobs/predict?version={version}", json={"inputs": values[:3]}
                )
                assert served.status_code == 200, (version, served.text)
            tensor = client.get("/v2/models/blobs").json()["inputs"][0]
            infer = client.post(
                "/v2/models/blobs/infer",
                json={
                    "inputs": [
                        {
                            "name": tensor["name"],
                            "shape": [2, 4],
                            "datatype": tensor["datatype"],
                            "data": [value for row in values[:2] for value in row],
                        }
                    ]
                },
            )
            assert infer.status_code == 200, infer.text
            download = client.get(f"/v1/models/blobs/versions/{winner}/artifact")
            assert download.status_code == 200
    finally:
        for worker in workers:
            stop_process(worker)
        kiln.close()  # before its data dir is looked at

    # Nothing lives on a local disk but caches and scratch: the artifacts are in the bucket.
    for machine in ("gateway", "worker-1", "worker-2"):
        assert not (tmp_path / machine / "artifacts").exists(), machine
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="artifacts/")
        for item in page.get("Contents", [])
    ]
    assert any(key.endswith("model.onnx") for key in keys)
    assert any("/output" in key or key.endswith((".csv", ".parquet")) for key in keys)

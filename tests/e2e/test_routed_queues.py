"""Routed queues: each job kind has its own queue, and ``kiln worker --queues`` picks which
a worker takes. A gateway with no worker of its own, a worker that only predicts, then one
that only searches: each job runs on the worker of its kind, and a job whose kind no worker
takes waits, queued, until one comes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory, stop_process
from tests.helpers import blobs_csv

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends

KILN = str(Path(sys.executable).with_name("kiln"))


def start_worker(kiln: KilnServer, queues: str) -> subprocess.Popen[bytes]:
    log = (kiln.data_dir.parent / f"worker-{queues}.log").open("ab")
    return subprocess.Popen(
        [KILN, "worker", "--queues", queues, "--concurrency", "1"],
        env=kiln.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_each_kind_runs_on_a_worker_that_takes_its_queue(
    kiln_server: ServerFactory, tmp_path: Path, classifier_onnx: Path
) -> None:
    kiln = kiln_server(workers=0)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with kiln.client() as client:
            uploaded = client.post(
                "/v1/models/flowers/versions",
                files={"file": ("m.onnx", classifier_onnx.read_bytes())},
                data={"labels": '["a", "b", "c"]'},
            )
            assert uploaded.status_code == 201, uploaded.text
        dataset_id = kiln.upload_dataset(blobs_csv(n_rows=120))
        workers.append(start_worker(kiln, "predict"))
        with kiln.client() as client:
            search = client.post(
                "/v1/jobs",
                json={
                    "kind": "search",
                    "dataset_id": dataset_id,
                    "model_name": "blobs",
                    "search": {"max_trials": 1, "max_epochs": 2, "validation": "holdout"},
                },
            ).json()
            rows = tmp_path / "rows.csv"
            rows.write_text("a,b,c,d\n" + "1,2,3,4\n" * 50)
            predict = client.post(
                "/v1/jobs/predict",
                data={"model": "flowers"},
                files={"file": ("rows.csv", rows.read_bytes())},
            ).json()
        done = kiln.wait_for_job(predict["id"], timeout=120)
        assert done["status"] == "succeeded", done["error"]
        time.sleep(3)  # the search has no worker yet: it stays queued
        with kiln.client() as client:
            assert client.get(f"/v1/jobs/{search['id']}").json()["status"] == "queued"
        workers.append(start_worker(kiln, "search"))
        searched = kiln.wait_for_job(search["id"], timeout=300)
        assert searched["status"] == "succeeded", searched["error"]
        # Different worker processes ran them.
        assert searched["worker"] != done["worker"]
    finally:
        for process in workers:
            stop_process(process)


def test_an_unknown_queue_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [KILN, "worker", "--queues", "search,gpu"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KILN_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 2
    assert "unknown queue 'gpu'" in done.stderr and "compress" in done.stderr


@pytest.mark.parametrize("kind", ["search", "compress", "predict"])
def test_every_kind_has_a_queue(kind: str) -> None:
    from app.core.config import Settings
    from app.jobs.queue import queue_for

    assert queue_for(Settings(queue_name="kiln"), kind) == f"kiln.{kind}"

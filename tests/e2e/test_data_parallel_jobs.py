"""Data-parallel trials through the real queue: a search with ``data_parallel: 2`` on a
server with two worker processes trains every trial on both (the trial's own process and
a member recruited through the broker, reading its work from the artifact store), and the
version records the device it was trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory) -> KilnServer:
    return module_kiln_server(workers=2, KILN_DEVICE="auto")


def test_each_trial_trains_on_two_processes(kiln: KilnServer) -> None:
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=1200, labels=("a", "b", "c")))
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "ddp",
                "search": {
                    "max_trials": 2,
                    "data_parallel": 2,
                    "validation": "holdout",
                    "seed": 1,
                    "space": {
                        "n_layers": 1,
                        "width": 32,
                        "epochs": 6,
                        "batch_size": 64,
                        "patience": 0,
                        "learning_rate": 0.01,
                    },
                },
            },
        )
        assert response.status_code == 202, response.text
        job = kiln.wait_for_job(response.json()["id"])
        assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
        trials = client.get(f"/v1/jobs/{job['id']}/trials").json()
        assert [t["metrics"]["train_processes"] for t in trials] == [2, 2], kiln.log_tail()
        version = client.get(f"/v1/models/ddp/versions/{job['result']['version']}").json()
    assert version["config"]["trained_on"] == "cpu"
    assert version["metrics"]["accuracy"] > 0.9
    log = Path(kiln.log_path).read_text()
    assert "data-parallel member" in log and "trained its share" in log


def test_data_parallel_over_the_server_limit_is_refused(kiln: KilnServer) -> None:
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=100))
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "ddp",
                "search": {"data_parallel": 9},
            },
        )
        too_many = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "ddp",
                "search": {"data_parallel": 17},
            },
        )
    assert response.status_code == 422
    assert "search.data_parallel: 9 is over this server's limit of 8" in response.text
    assert too_many.status_code == 422 and "data_parallel" in too_many.text


def test_with_no_free_worker_trials_train_alone(kiln_server: ServerFactory) -> None:
    """One worker process: nobody can help, so the first trials wait KILN_DATA_PARALLEL_JOIN_S
    and train alone, and after two such misses the rest do not wait at all."""
    server = kiln_server(workers=1, KILN_DATA_PARALLEL_JOIN_S="2")
    dataset_id = server.upload_dataset(blobs_csv(n_rows=300))
    with server.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "alone",
                "search": {
                    "max_trials": 4,
                    "data_parallel": 2,
                    "validation": "holdout",
                    "space": {"epochs": 2, "n_layers": 1},
                },
            },
        )
        assert response.status_code == 202, response.text
        job = server.wait_for_job(response.json()["id"])
        assert job["status"] == "succeeded", (job["error"], server.log_tail())
        trials = client.get(f"/v1/jobs/{job['id']}/trials").json()
    assert [t["metrics"]["train_processes"] for t in trials] == [1, 1, 1, 1]
    log = server.log_path.read_text()
    assert log.count("data-parallel training: 0 of 1 member processes joined") == 2
    assert "this worker trains the rest alone" in log

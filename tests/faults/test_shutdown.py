"""``docker stop`` in the middle of a search: SIGTERM reaches ``kiln serve`` while a trial
trains. The gateway stops its workers and exits; started again, the job is picked up and
ends, with trials done before the stop kept and exactly one registered version."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.e2e_server import KilnServer
from tests.helpers import blobs_csv


def test_a_search_stopped_by_sigterm_converges_after_restart(tmp_path: Path) -> None:
    kiln = KilnServer(tmp_path / "data", workers=1, KILN_JOB_LEASE_S="4",
                      KILN_QUEUED_RESEND_S="2")
    kiln.start()
    try:
        dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
        with kiln.client() as client:
            response = client.post("/v1/jobs", json={
                "kind": "search", "dataset_id": dataset_id, "model_name": "stopped",
                "search": {"max_trials": 4, "max_epochs": 30, "seed": 3,
                           "space": {"n_layers": 1, "width": 32, "epochs": 30,
                                     "batch_size": 8, "patience": 0}}})
        assert response.status_code == 202, response.text
        job_id = int(response.json()["id"])
        deadline = time.monotonic() + 120
        with kiln.client() as client:
            while time.monotonic() < deadline:
                trials = client.get(f"/v1/jobs/{job_id}/trials").json()
                if any(t["state"] == "complete" for t in trials) and any(
                        t["state"] == "running" for t in trials):
                    break
                time.sleep(0.2)
        assert kiln.process is not None
        kiln.process.send_signal(signal.SIGTERM)
        kiln.process.wait(timeout=90)
        kiln.start()
        job = kiln.wait_for_job(job_id, timeout=400)
        assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
        with kiln.client() as client:
            trials = client.get(f"/v1/jobs/{job_id}/trials").json()
            versions = client.get("/v1/models/stopped/versions").json()["items"]
        assert len([t for t in trials if t["state"] == "complete"]) >= 2  # before and after
        assert [v["version"] for v in versions] == [1]
    finally:
        kiln.close()

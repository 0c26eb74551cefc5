"""``docker stop`` in the middle of a search: SIGTERM reaches ``kiln serve`` while a trial
trains. The gateway stops its workers and exits; started again, the job is picked up and
ends, with trials done before the stop kept and exactly one registered version."""

from __future__ import annotations

import signal

import pytest

from tests.faults.jobs import submit_slow_search, wait_for_trials
from tests.fixtures.servers import ServerFactory
from tests.helpers import blobs_csv

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


def test_a_search_stopped_by_sigterm_converges_after_restart(kiln_server: ServerFactory) -> None:
    kiln = kiln_server(workers=1, KILN_JOB_LEASE_S="4", KILN_QUEUED_RESEND_S="2")
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
    job_id = submit_slow_search(kiln, dataset_id, "stopped", trials=3, epochs=30, seed=3)
    with kiln.client() as client:
        wait_for_trials(client, job_id, {"complete", "running"})
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

"""A worker's pool process SIGKILLed mid-trial: the job's lease expires, the reaper
re-queues it, a fresh pool process resumes from the stored trials, the killed trial's
heartbeat goes stale so it is marked lost and run again with the same parameters, and the
job succeeds on its second attempt. (The whole worker killed at once is
``test_whole_worker.py``.)"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.jobs import submit_slow_search, wait_for_trials
from tests.fixtures.servers import ServerFactory
from tests.helpers import blobs_csv

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


def test_job_survives_a_killed_worker(kiln_server: ServerFactory) -> None:
    # The re-queued job is sent again after 2 s, not the default minute.
    kiln = kiln_server(KILN_JOB_LEASE_S="6", KILN_TRIAL_HEARTBEAT_S="1", KILN_QUEUED_RESEND_S="2")
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
    job_id = submit_slow_search(kiln, dataset_id, "killed-worker", trials=3, epochs=30, seed=3)
    with kiln.client() as client:
        job = wait_for_trials(client, job_id, {"complete", "running"})
    os.kill(int(job["worker"].rsplit(":", 1)[1]), signal.SIGKILL)

    final = kiln.wait_for_job(job_id)
    assert final["status"] == "succeeded", (final["error"], kiln.log_tail())
    assert final["attempt"] == 2
    with kiln.client() as client:
        trials = client.get(f"/v1/jobs/{job_id}/trials").json()
    states = [trial["state"] for trial in trials]
    assert states.count("lost") == 1 and states.count("complete") == 3
    assert "running" not in states
    assert {trial["attempt"] for trial in trials} == {1, 2}
    lost = next(trial for trial in trials if trial["state"] == "lost")
    retry = next(trial for trial in trials if trial["retry_of"] is not None)
    assert retry["retry_of"] == lost["number"] and retry["params"] == lost["params"]
    assert retry["state"] == "complete" and "heartbeat" in lost["error"]

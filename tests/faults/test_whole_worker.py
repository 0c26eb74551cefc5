"""The whole worker SIGKILLed mid-trial (its main process and its pool together, as when
its container or machine dies), on whichever broker the suite runs with: ``kiln serve``'s
supervisor starts a new worker, the job's lease lapses, the reaper re-queues it, and it
succeeds on its second attempt with exactly one registered version. (A pool child alone
SIGKILLed is ``test_killed_worker.py``.)"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.jobs import submit_slow_search, wait_for_trials
from tests.fixtures.servers import ServerFactory
from tests.helpers import blobs_csv

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


def test_a_job_survives_its_whole_worker_killed(kiln_server: ServerFactory) -> None:
    kiln = kiln_server(workers=1, KILN_JOB_LEASE_S="5", KILN_QUEUED_RESEND_S="2")
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
    job_id = submit_slow_search(kiln, dataset_id, "whole-worker", trials=2, epochs=30, seed=5)
    with kiln.client() as client:
        job = wait_for_trials(client, job_id, {"running"})
    pool_child = int(job["worker"].rsplit(":", 1)[1])
    worker_group = os.getpgid(pool_child)  # the supervisor gives the worker its own
    assert worker_group != os.getpgid(0)
    os.killpg(worker_group, signal.SIGKILL)

    final = kiln.wait_for_job(job_id, timeout=400)
    assert final["status"] == "succeeded", (final["error"], kiln.log_tail())
    assert final["attempt"] == 2
    with kiln.client() as client:
        versions = client.get("/v1/models/whole-worker/versions").json()["items"]
    assert [v["version"] for v in versions] == [1]
    # The registered artifacts are the second attempt's own keys.
    job_folder = kiln.data_dir / "artifacts" / "jobs" / str(job_id)
    assert list(job_folder.glob("attempt-2/trial-*/model.onnx"))
    assert not (job_folder / "attempt-1").exists()
    assert "worker exited with code -9; restarting" in kiln.log_path.read_text(errors="replace")

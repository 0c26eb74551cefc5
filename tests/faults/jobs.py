"""A search slow enough to be interrupted, and waiting until it is mid-trial."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.fixtures.servers import KilnServer


def submit_slow_search(
    kiln: KilnServer, dataset_id: int, model: str, *, trials: int, epochs: int, seed: int
) -> int:
    """A search whose trials take a few seconds each (batch 8, no early stop; scored on the
    validation split, not five folds, so the first trial ends well within the waits)."""
    with kiln.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": model,
                "search": {
                    "max_trials": trials,
                    "max_epochs": epochs,
                    "seed": seed,
                    "validation": "holdout",
                    "space": {
                        "n_layers": 1,
                        "width": 32,
                        "epochs": epochs,
                        "batch_size": 8,
                        "patience": 0,
                    },
                },
            },
        )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def wait_for_trials(
    client: httpx.Client, job_id: int, states: set[str], timeout: float = 120
) -> dict[str, Any]:
    """The job, once its trials include every state in ``states`` and it names a worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        trials = client.get(f"/v1/jobs/{job_id}/trials").json()
        if states <= {t["state"] for t in trials} and job["worker"]:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never had trials {sorted(states)} at once")

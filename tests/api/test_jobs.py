"""POST/GET /v1/jobs: validation, commit-then-enqueue, listing, cancel."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs.queue import make_celery, queue_for
from app.tables import Job
from tests.helpers import blobs_csv, csv_bytes


def make_dataset(client: TestClient, headers: dict, content: bytes | None = None) -> int:
    response = client.post(
        "/v1/datasets",
        headers=headers,
        files={"file": ("d.csv", content or blobs_csv(), "text/csv")},
        data={"target": "label"},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def job_body(dataset_id: int, **search: object) -> dict:
    return {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": "blobs",
        "search": {"algorithm": "random", "max_trials": 3, **search},
    }


def broker_messages(settings: Settings) -> list[dict]:
    """Drain the job queue of the real broker and return the task messages found."""
    found = []
    with make_celery(settings).connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_for(settings, "search"))
        try:
            while True:
                message = queue.get(timeout=1)
                found.append({"task": message.headers["task"], "args": message.payload[0]})
                message.ack()
        except queue.Empty:
            pass
        finally:
            queue.close()
    return found


def test_submit_commits_then_enqueues_by_task_name(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    dataset_id = make_dataset(client, admin)
    response = client.post("/v1/jobs", headers=admin, json=job_body(dataset_id))
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert job["progress"] == {
        "done": 0,
        "total": 3,
        "trials_done": 0,  # the same counts under their deprecated names
        "trials_total": 3,
        "best_value": None,
        "best_metric": "accuracy",
        "registered_value": None,
        "registered_version": None,
        "unit": "trials",
        "time_budget_s": None,
        "elapsed_s": None,
        "phase": None,  # said while it runs
    }
    assert broker_messages(settings) == [{"task": "kiln.search", "args": [job["id"]]}]
    assert client.get(f"/v1/jobs/{job['id']}", headers=admin).json()["status"] == "queued"


def test_a_time_only_search_counts_no_trial_total_and_tells_its_budget(
    client: TestClient, admin: dict
) -> None:
    dataset_id = make_dataset(client, admin)
    body = job_body(dataset_id)
    body["search"] = {"timeout_s": 45}
    job = client.post("/v1/jobs", headers=admin, json=body).json()
    assert job["progress"]["total"] == 0  # it runs until the 45 s are spent
    assert job["progress"]["time_budget_s"] == 45
    assert job["spec"]["search"]["max_trials"] == 1000  # the ceiling chosen for it


BAD_JOBS = [
    ("unknown algorithm", {"search": {"algorithm": "annealing-ish"}}, "search.algorithm"),
    ("zero trials", {"search": {"max_trials": 0}}, "search.max_trials"),
    ("unknown field", {"priority": 5}, "priority"),
    ("bad model name", {"model_name": "../etc"}, "model_name"),
    ("wrong kind", {"kind": "train"}, "kind"),
]


@pytest.mark.parametrize(
    ("patch", "field"), [case[1:] for case in BAD_JOBS], ids=[case[0] for case in BAD_JOBS]
)
def test_bad_job_is_422_naming_the_field(
    client: TestClient, admin: dict, patch: dict, field: str, settings: Settings
) -> None:
    body = job_body(make_dataset(client, admin))
    for key, value in patch.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    response = client.post("/v1/jobs", headers=admin, json=body)
    assert response.status_code == 422
    locations = [".".join(map(str, item["loc"][1:])) for item in response.json()["detail"]]
    assert field in locations
    assert client.get("/v1/jobs", headers=admin).json()["total"] == 0
    assert broker_messages(settings) == []


def test_unknown_dataset_is_422(client: TestClient, admin: dict) -> None:
    response = client.post("/v1/jobs", headers=admin, json=job_body(999999))
    assert response.status_code == 422
    assert response.json()["detail"] == "dataset_id: dataset 999999 not found"


def test_malformed_json_is_422(client: TestClient, admin: dict) -> None:
    response = client.post(
        "/v1/jobs",
        headers={**admin, "Content-Type": "application/json"},
        content=b'{"kind": "search", ',
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_model_task_mismatch_is_409(client: TestClient, admin: dict, settings: Settings) -> None:
    from app.core.db import session_scope
    from app.registry.repository import ModelRepository

    with session_scope(settings.database_url) as session:
        ModelRepository(session).get_or_create("blobs", "regression")
    response = client.post("/v1/jobs", headers=admin, json=job_body(make_dataset(client, admin)))
    assert response.status_code == 409
    assert "is a regression model" in response.json()["detail"]


def test_list_is_newest_first_and_filters(client: TestClient, admin: dict) -> None:
    dataset_id = make_dataset(client, admin)
    ids = [
        client.post("/v1/jobs", headers=admin, json=job_body(dataset_id)).json()["id"]
        for _ in range(3)
    ]
    page = client.get("/v1/jobs?limit=2", headers=admin).json()
    assert [job["id"] for job in page["items"]] == ids[::-1][:2] and page["total"] == 3
    assert client.get("/v1/jobs?status=running", headers=admin).json()["total"] == 0
    assert client.get("/v1/jobs?status=nonsense", headers=admin).status_code == 422


def test_cancel_is_idempotent_and_a_finished_job_is_409(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    dataset_id = make_dataset(client, admin)
    job_id = client.post("/v1/jobs", headers=admin, json=job_body(dataset_id)).json()["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
    assert again.status_code == 200 and again.json() == cancelled.json()
    done = client.post("/v1/jobs", headers=admin, json=job_body(dataset_id)).json()["id"]
    with session_scope(settings.database_url) as session:
        session.execute(update(Job).where(Job.id == done).values(status="succeeded"))
    refused = client.post(f"/v1/jobs/{done}/cancel", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"job {done} already succeeded; only a queued or running job can be cancelled"
    )
    assert client.get("/v1/jobs/999999", headers=admin).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/trials", headers=admin).json() == []


def test_regression_dataset_can_be_searched(client: TestClient, admin: dict) -> None:
    rows = [[i, (i * 7) % 11, i * 0.5 + 1] for i in range(40)]
    dataset_id = make_dataset(client, admin, csv_bytes(["a", "b", "label"], rows))
    assert client.post("/v1/jobs", headers=admin, json=job_body(dataset_id)).status_code == 202

"""``Idempotency-Key`` on POST /v1/jobs and POST /v1/datasets: a repeat gets the first
answer and creates nothing (one job, one broker message, one dataset); another body with
the same key is a 409 that names the key; keys are per API key and expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.idempotency import Answer, KeyedRequest, remember
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.core.errors import Conflict
from app.jobs.queue import JobQueue
from app.main import reap_once
from app.tables import Dataset, IdempotentRequest, Job
from tests.api.test_jobs import broker_messages, job_body, make_dataset
from tests.conftest import bearer
from tests.helpers import blobs_csv


def count(settings: Settings, table: type) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_a_repeated_job_submission_gets_the_first_answer(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    dataset_id = make_dataset(client, admin)
    keyed = {**admin, "Idempotency-Key": "submit-1"}
    first = client.post("/v1/jobs", headers=keyed, json=job_body(dataset_id))
    again = client.post("/v1/jobs", headers=keyed, json=job_body(dataset_id))
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert count(settings, Job) == 1
    assert [m["args"] for m in broker_messages(settings)] == [[first.json()["id"]]]
    # The same key with another body is refused by name, and creates nothing.
    other = client.post("/v1/jobs", headers=keyed, json=job_body(dataset_id, max_trials=4))
    assert other.status_code == 409
    assert (
        "Idempotency-Key 'submit-1' was used for a different POST /v1/jobs"
        in (other.json()["detail"])
    )
    assert count(settings, Job) == 1
    # Without a key, or with a new one, it is a new job.
    assert (
        client.post("/v1/jobs", headers=admin, json=job_body(dataset_id)).json()["id"]
        != (first.json()["id"])
    )
    assert (
        client.post(
            "/v1/jobs", headers={**admin, "Idempotency-Key": "submit-2"}, json=job_body(dataset_id)
        ).status_code
        == 202
    )
    assert count(settings, Job) == 3


def test_keys_belong_to_the_api_key_that_sent_them(
    client: TestClient, keys: dict, settings: Settings
) -> None:
    dataset_id = make_dataset(client, bearer(keys["admin"]))
    for scope in ("admin", "write"):
        response = client.post(
            "/v1/jobs",
            json=job_body(dataset_id),
            headers={**bearer(keys[scope]), "Idempotency-Key": "shared"},
        )
        assert response.status_code == 202
    assert count(settings, Job) == 2


@pytest.mark.parametrize("key", ["has space", "x" * 256, "tab\tinside", "é".encode()])
def test_a_malformed_key_is_refused_by_name(
    client: TestClient, admin: dict, settings: Settings, key: str | bytes
) -> None:
    dataset_id = make_dataset(client, admin)
    response = client.post(
        "/v1/jobs", json=job_body(dataset_id), headers={**admin, "Idempotency-Key": key}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert count(settings, Job) == 0


def test_a_repeated_upload_stores_one_dataset(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    keyed = {**admin, "Idempotency-Key": "upload-7"}

    def upload(content: bytes, target: str = "label") -> object:
        return client.post(
            "/v1/datasets",
            headers=keyed,
            data={"target": target},
            files={"file": ("d.csv", content, "text/csv")},
        )

    first, again = upload(blobs_csv()), upload(blobs_csv())
    assert first.status_code == again.status_code == 201  # type: ignore[attr-defined]
    assert again.json() == first.json()  # type: ignore[attr-defined]
    assert count(settings, Dataset) == 1
    for changed in (upload(blobs_csv(seed=3)), upload(blobs_csv(), target="f0")):
        assert changed.status_code == 409  # type: ignore[attr-defined]
        assert "upload-7" in changed.json()["detail"]  # type: ignore[attr-defined]
    assert count(settings, Dataset) == 1


def test_a_racing_duplicate_rolls_back_with_a_409(
    client: TestClient, admin: dict, settings: Settings, keys: dict
) -> None:
    """Two requests with one key that both found no earlier answer: the second to store
    its answer gets a Conflict, and its transaction (its job included) rolls back."""
    dataset_id = make_dataset(client, admin)
    first = client.post(
        "/v1/jobs", headers={**admin, "Idempotency-Key": "race"}, json=job_body(dataset_id)
    )
    stored = first.json()
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(IdempotentRequest))
        assert row is not None
        request = KeyedRequest(
            api_key_id=row.api_key_id, route=row.route, key=row.key, body_hash=row.fingerprint
        )
    with (
        pytest.raises(Conflict, match="is being answered"),
        session_scope(settings.database_url) as session,
    ):
        session.add(Job(kind="search", status="queued", spec={}, model_name="late"))
        remember(session, request, Answer(202, stored))
    assert count(settings, Job) == 1


def test_the_reaper_forgets_answers_after_a_day(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    dataset_id = make_dataset(client, admin)
    for key in ("old", "new"):
        client.post(
            "/v1/jobs", headers={**admin, "Idempotency-Key": key}, json=job_body(dataset_id)
        )
    with session_scope(settings.database_url) as session:
        old = session.scalar(select(IdempotentRequest).where(IdempotentRequest.key == "old"))
        assert old is not None
        old.created_at = utcnow() - timedelta(hours=25)
    assert reap_once(settings, JobQueue(settings)) == 1
    with session_scope(settings.database_url) as session:
        assert list(session.scalars(select(IdempotentRequest.key))) == ["new"]

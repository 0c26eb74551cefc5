"""``DELETE /v1/datasets/{id}`` racing ``POST /v1/jobs`` on the same dataset, with real
threads against the app and the real database (SQLite, or PostgreSQL when
KILN_TEST_DATABASE_URL is set): exactly one of the two wins, and the other is told why
(409 naming the job, or 422 saying the dataset was deleted). Never both, never a 5xx.

The first two tests force each interleaving (one request pauses inside its transaction
while the other arrives); the last lets them collide as they will, many times."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope
from app.datasets.service import original_key
from app.search import kind as search_kind
from app.storage import get_store
from app.storage.local import LocalArtifactStore
from app.tables import Dataset, Job
from tests.api.test_deletion import search, upload_dataset
from tests.conftest import register

PAUSE_S = 0.6  # long enough for the other request to reach its decision


def pause_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> threading.Event:
    """Make the first call of ``owner.name`` signal, then stop for PAUSE_S."""
    entered = threading.Event()
    original: Callable[..., Any] = getattr(owner, name)

    def paused(*args: Any, **kwargs: Any) -> Any:
        if not entered.is_set():
            entered.set()
            time.sleep(PAUSE_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)
    return entered


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def job_rows(settings: Settings, dataset_id: int) -> list[tuple[int, str]]:
    with session_scope(settings.database_url) as session:
        rows = session.query(Job.id, Job.status).filter(Job.dataset_id == dataset_id)
        return [(int(row.id), str(row.status)) for row in rows]


def is_deleted(settings: Settings, dataset_id: int) -> bool:
    with session_scope(settings.database_url) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset.deleted_at is not None


def test_a_submission_under_way_makes_the_deletion_a_conflict(
    client: TestClient,
    admin: dict,
    settings: Settings,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset_id = upload_dataset(client, admin)
    entered = pause_once(monkeypatch, search_kind, "_plan")  # after the dataset was read
    submitted = pool.submit(search, client, admin, dataset_id)
    assert entered.wait(30)
    deleted = client.delete(f"/v1/datasets/{dataset_id}", headers=admin)
    job = submitted.result(timeout=60)
    assert job.status_code == 202, job.text
    assert deleted.status_code == 409, deleted.text
    assert f"job(s) {job.json()['id']}" in deleted.json()["detail"]
    assert get_store(settings).exists(original_key(dataset_id))
    assert not is_deleted(settings, dataset_id)


def test_a_deletion_under_way_refuses_the_submission(
    client: TestClient,
    admin: dict,
    settings: Settings,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset_id = upload_dataset(client, admin)
    entered = pause_once(monkeypatch, LocalArtifactStore, "delete")  # before any file goes
    deleting = pool.submit(client.delete, f"/v1/datasets/{dataset_id}", headers=admin)
    assert entered.wait(30)
    job = search(client, admin, dataset_id)
    deleted = deleting.result(timeout=60)
    assert deleted.status_code == 204, deleted.text
    assert job.status_code == 422, job.text
    assert (
        job.json()["detail"] == f"dataset_id: dataset {dataset_id} was deleted (its files are gone)"
    )
    assert job_rows(settings, dataset_id) == []


def predict(client: TestClient, admin: dict, dataset_id: int) -> httpx.Response:
    body = {"kind": "predict", "model": "flowers", "dataset_id": dataset_id}
    return client.post("/v1/jobs", headers=admin, json=body)


@pytest.mark.parametrize("submit", [search, predict], ids=["search", "predict"])
def test_exactly_one_of_a_deletion_and_a_submission_wins(
    client: TestClient,
    admin: dict,
    settings: Settings,
    pool: ThreadPoolExecutor,
    classifier_onnx: Path,
    submit: Callable[[TestClient, dict, int], httpx.Response],
) -> None:
    """Both requests released at once, 8 times: a predict job reads the dataset's CSV
    while it is checked, so a deletion that went first must not leave it a missing file."""
    register(settings, classifier_onnx, name="flowers")
    outcomes = []
    for _ in range(8):
        dataset_id = upload_dataset(client, admin)
        start = threading.Barrier(2)

        def deleting(dataset_id: int = dataset_id, start: threading.Barrier = start) -> Any:
            start.wait()
            return client.delete(f"/v1/datasets/{dataset_id}", headers=admin)

        def submitting(dataset_id: int = dataset_id, start: threading.Barrier = start) -> Any:
            start.wait()
            return submit(client, admin, dataset_id)

        deleted_future = pool.submit(deleting)
        job_future = pool.submit(submitting)
        deleted, job = deleted_future.result(timeout=60), job_future.result(timeout=60)
        jobs = job_rows(settings, dataset_id)
        if job.status_code == 202:
            assert deleted.status_code == 409, (deleted.status_code, deleted.text)
            assert f"job(s) {job.json()['id']}" in deleted.json()["detail"]
            assert [job_id for job_id, _ in jobs] == [job.json()["id"]]
            assert not is_deleted(settings, dataset_id)
            assert get_store(settings).exists(original_key(dataset_id))
            outcomes.append("job")
        else:
            assert (job.status_code, deleted.status_code) == (422, 204), (job.text, deleted.text)
            assert "was deleted (its files are gone)" in job.json()["detail"]
            assert jobs == []
            assert is_deleted(settings, dataset_id)
            outcomes.append("deletion")
    assert len(outcomes) == 8  # each round decided, one way or the other

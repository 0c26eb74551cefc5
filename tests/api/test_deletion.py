"""Deleting what ModelKiln stores, through the API against the real database and store:
a dataset's files (refused while a job uses it; its row stays for lineage), an archived
version's artifact (refused for a live one), a finished job's files (refused for a queued
one), and retention in the gateway's housekeeping pass. Nothing else is touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.datasets.service import arrays_key, original_key, raw_key
from app.jobs.queue import JobQueue
from app.main import reap_once
from app.storage import get_store
from app.tables import Job, ModelVersion
from tests.api.test_model_upload import upload
from tests.conftest import make_settings, register
from tests.helpers import blobs_csv


def upload_dataset(client: TestClient, admin: dict) -> int:
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("blobs.csv", blobs_csv(), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def search(client: TestClient, admin: dict, dataset_id: int) -> Any:
    body = {"kind": "search", "dataset_id": dataset_id, "model_name": "m", "search": {}}
    return client.post("/v1/jobs", headers=admin, json=body)


def test_a_dataset_is_deleted_once_no_job_uses_it(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    kept, doomed = upload_dataset(client, admin), upload_dataset(client, admin)
    queued = search(client, admin, doomed)
    assert queued.status_code == 202, queued.text
    busy = client.delete(f"/v1/datasets/{doomed}", headers=admin)
    assert busy.status_code == 409 and f"job(s) {queued.json()['id']}" in busy.text
    client.post(f"/v1/jobs/{queued.json()['id']}/cancel", headers=admin)
    assert client.delete(f"/v1/datasets/{doomed}", headers=admin).status_code == 204
    store = get_store(settings)
    assert not any(store.exists(key(doomed)) for key in (original_key, arrays_key, raw_key))
    assert store.exists(original_key(kept))
    read = client.get(f"/v1/datasets/{doomed}", headers=admin)
    assert read.status_code == 404 and "was deleted" in read.text
    listed = client.get("/v1/datasets", headers=admin).json()["items"]
    assert [row["id"] for row in listed] == [kept]
    refused = search(client, admin, doomed)
    assert refused.status_code == 422 and "dataset_id: dataset" in refused.text
    assert "was deleted" in refused.text
    assert client.delete(f"/v1/datasets/{doomed}", headers=admin).status_code == 404
    assert client.get(f"/v1/datasets/{kept}", headers=admin).status_code == 200


def test_only_an_archived_versions_artifact_is_deleted(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    for _ in range(2):
        status, _body = upload(client, admin, classifier_onnx.read_bytes(), name="flowers")
        assert status == 201
    first = client.get("/v1/models/flowers/versions/1", headers=admin).json()
    store = get_store(settings)
    live = client.delete("/v1/models/flowers/versions/1/artifact", headers=admin)
    assert live.status_code == 409 and "archive it first" in live.text
    held = client.delete("/v1/models/flowers/versions/1", headers=admin)
    assert held.status_code == 409 and "['production']" in held.text  # v1 took it
    moved = {"version": 2}
    client.put("/v1/models/flowers/aliases/production", headers=admin, json=moved)
    assert client.delete("/v1/models/flowers/versions/1", headers=admin).status_code == 200
    deleted = client.delete("/v1/models/flowers/versions/1/artifact", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["artifact_deleted_at"], deleted.text
    version = client.get("/v1/models/flowers/versions/1", headers=admin).json()
    assert version["artifact_deleted_at"] and version["sha256"] == first["sha256"]  # kept
    with session_scope(settings.database_url) as session:
        keys = [row.artifact_key for row in session.query(ModelVersion).order_by(ModelVersion.id)]
    assert not store.exists(keys[0]) and store.exists(keys[1])
    gone = client.get("/v1/models/flowers/versions/1/artifact", headers=admin)
    assert gone.status_code == 404 and "was deleted" in gone.text
    served = client.post(
        "/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]}
    )
    assert served.status_code == 200 and served.json()["version"] == 2


def seed_predict_job(settings: Settings, *, status: str, age: timedelta) -> tuple[int, list[str]]:
    """A predict job as a worker leaves it (an uploaded input, one part, an output), and
    the keys of its files: input, output, part."""
    store = get_store(settings)
    finished = utcnow() - age
    with session_scope(settings.database_url) as session:
        job = Job(
            kind="predict",
            status=status,
            model_name="flowers",
            spec={},
            attempt=1,
            max_attempts=3,
            created_at=finished,
            started_at=finished,
            finished_at=finished if status != "queued" else None,
            updated_at=finished,
        )
        session.add(job)
        session.flush()
        keys = [
            f"jobs/{job.id}/input.csv",
            f"jobs/{job.id}/attempt-1/predictions.csv",
            f"jobs/{job.id}/parts/part-000000.arrow",
        ]
        stored = [store.put_bytes(key, b"row,prediction\n1,a\n") for key in keys]
        job.spec = {
            "kind": "predict",
            "model": "flowers",
            "version": 1,
            "dataset_id": None,
            "key_columns": [],
            "output_format": "csv",
            "chunk_rows": 1000,
            "input_key": keys[0],
            "filename": "rows.csv",
        }
        job.checkpoint = {
            "parts": [{"attempt": 1, "index": 0, "rows": 1, "sha256": stored[2].sha256}]
        }
        if status == "succeeded":
            job.result = {
                "rows": 1,
                "model": "flowers",
                "version": 1,
                "output": {
                    "key": keys[1],
                    "sha256": stored[1].sha256,
                    "format": "csv",
                    "media_type": "text/csv",
                    "size_bytes": stored[1].size_bytes,
                },
            }
        return job.id, keys


def test_a_finished_jobs_files_are_deleted_and_a_queued_ones_are_not(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    store = get_store(settings)
    queued, queued_keys = seed_predict_job(settings, status="queued", age=timedelta(0))
    busy = client.delete(f"/v1/jobs/{queued}/files", headers=admin)
    assert busy.status_code == 409 and "cancel it first" in busy.text
    done, keys = seed_predict_job(settings, status="succeeded", age=timedelta(0))
    assert client.get(f"/v1/jobs/{done}/output", headers=admin).status_code == 200
    deleted = client.delete(f"/v1/jobs/{done}/files", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["files_deleted_at"], deleted.text
    assert not any(store.exists(key) for key in keys)
    assert all(store.exists(key) for key in queued_keys)
    gone = client.get(f"/v1/jobs/{done}/output", headers=admin)
    assert gone.status_code == 404 and f"the output of job {done} was deleted" in gone.text
    assert client.delete("/v1/jobs/999999/files", headers=admin).status_code == 404


def test_retention_deletes_scratch_and_old_outputs_only(settings: Settings) -> None:
    store = get_store(settings)
    old, old_keys = seed_predict_job(settings, status="succeeded", age=timedelta(hours=3))
    new, new_keys = seed_predict_job(settings, status="failed", age=timedelta(seconds=1))
    keeping = make_settings(settings.data_dir, settings.database_url, scratch_retention_s=3600)
    reap_once(keeping, JobQueue(keeping))
    input_key, output_key, part_key = old_keys
    assert not store.exists(part_key)  # scratch past its retention
    assert store.exists(output_key) and store.exists(input_key)  # outputs: kept by default
    assert all(store.exists(key) for key in new_keys)  # finished a second ago
    expiring = make_settings(
        settings.data_dir, settings.database_url, output_retention_s=7200, scratch_retention_s=3600
    )
    reap_once(expiring, JobQueue(expiring))
    assert not store.exists(output_key) and not store.exists(input_key)
    assert all(store.exists(key) for key in new_keys)
    with session_scope(settings.database_url) as session:
        swept = session.get(Job, old)
        assert swept is not None and swept.files_deleted_at and swept.scratch_deleted_at
        recent = session.get(Job, new)
        assert recent is not None and recent.files_deleted_at is None


def test_a_file_two_versions_share_stays_while_one_of_them_keeps_it(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    """Two versions registered from one stored file (as a re-registration would): deleting
    the archived one's artifact marks it deleted and leaves the file to the other."""
    register(settings, classifier_onnx, name="twins", labels=["a", "b", "c"])
    register(settings, classifier_onnx, name="twins", labels=["a", "b", "c"])
    client.put("/v1/models/twins/aliases/production", headers=admin, json={"version": 2})
    assert client.delete("/v1/models/twins/versions/1", headers=admin).status_code == 200
    deleted = client.delete("/v1/models/twins/versions/1/artifact", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["artifact_deleted_at"]
    served = client.post("/v1/models/twins/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]})
    assert served.status_code == 200 and served.json()["version"] == 2

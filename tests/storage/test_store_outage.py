"""The object store goes away under a running gateway: writes that need it get a 503 that
names the store and record nothing, and everything that does not need it keeps working
(metadata, models already loaded, health)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.storage import get_store
from tests.conftest import bearer, make_settings, register
from tests.helpers import blobs_csv
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, bucket_name, s3_server


def test_writes_fail_cleanly_and_reads_of_what_is_loaded_go_on(
    tmp_path: Path, settings: Settings, keys: dict[str, str], classifier_onnx: Path
) -> None:
    admin = bearer(keys["admin"])
    bucket = bucket_name()
    with s3_server(tmp_path) as endpoint:
        s3 = make_settings(
            tmp_path / "gateway",
            settings.database_url,
            artifact_url=f"s3://{bucket}/a",
            s3_endpoint_url=endpoint,
            s3_access_key_id=ACCESS_KEY_ID,
            s3_secret_access_key=SECRET_ACCESS_KEY,
        )
        get_store(s3).ensure_ready()
        register(s3, classifier_onnx)
        client = TestClient(create_app(s3, run_reaper=False), raise_server_exceptions=False)
        client.__enter__()
        first = client.post(
            "/v1/datasets",
            headers=admin,
            data={"target": "label"},
            files={"file": ("a.csv", blobs_csv())},
        )
        assert first.status_code == 201, first.text
        served = client.post(
            "/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]}
        )
        assert served.status_code == 200, served.text
    try:  # the S3 server is gone now
        refused = client.post(
            "/v1/datasets",
            headers=admin,
            data={"target": "label"},
            files={"file": ("b.csv", blobs_csv())},
        )
        assert refused.status_code == 503, refused.text
        assert f"s3://{bucket}/a failed to store" in refused.json()["detail"]
        listed = client.get("/v1/datasets", headers=admin).json()
        assert [d["id"] for d in listed["items"]] == [first.json()["id"]]  # nothing recorded
        assert client.get(f"/v1/datasets/{first.json()['id']}", headers=admin).status_code == 200
        again = client.post(
            "/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]}
        )
        assert again.status_code == 200  # the loaded model does not need the store
        # A cached copy is only used while the bucket still holds it: asked, it cannot say.
        download = client.get("/v1/models/flowers/versions/1/artifact", headers=admin)
        assert download.status_code == 503
        assert f"s3://{bucket}/a failed to look up" in download.json()["detail"]
        assert client.get("/v2/health/live").status_code == 200
    finally:
        client.__exit__(None, None, None)

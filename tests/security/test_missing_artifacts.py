"""An artifact gone from the store (deleted on disk, a bucket emptied) is a 503 that names
what is missing, never a 500 or a server path, and the gateway keeps serving the rest."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope
from app.storage import get_store
from app.tables import ModelVersion
from tests.conftest import register
from tests.helpers import ui_sign_in


def _remove_artifact(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        row = session.query(ModelVersion).one()
        key = row.artifact_key
    path = get_store(settings).local_path(key, None)
    path.unlink()
    return str(path)


def test_a_missing_onnx_file_is_a_503_naming_it(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path, keys: dict[str, str]
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    gone = _remove_artifact(settings)
    answer = client.get("/v1/models/flowers/versions/1/artifact", headers=admin)
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"] == (
        "the ONNX file of flowers v1 is missing from the artifact store"
    )
    predicted = client.post(
        "/v1/models/flowers/predict", headers=admin, json={"inputs": [[1, 2, 3, 4]]}
    )
    assert predicted.status_code == 503, predicted.text
    ui_sign_in(client, keys["read"])
    page = client.get("/ui/models/flowers/versions/1/artifact")
    assert page.status_code == 503 and "missing from the artifact store" in page.text
    for text in (answer.text, predicted.text, page.text):
        assert gone not in text and str(settings.data_dir) not in text
    assert client.get("/v1/models/flowers", headers=admin).status_code == 200
    assert client.get("/v2/health/live").status_code == 200

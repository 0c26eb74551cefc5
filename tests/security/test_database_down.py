"""The registry database unreachable: every route that needs it answers 503 with
Retry-After and a message that says so (never a 500 or a hung request); the inference
fast path too; routes that do not need it keep answering."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import load_settings
from app.main import create_app
from tests.fixtures.servers import free_port

# Its subject is the queue, leases, claims or the database: run on every backend.
pytestmark = pytest.mark.backends


def test_a_database_that_does_not_answer_is_a_503(tmp_path: Path) -> None:
    nowhere = f"postgresql+psycopg://kiln@127.0.0.1:{free_port()}/kiln?connect_timeout=2"
    settings = load_settings(data_dir=tmp_path / "data", database_url=nowhere)
    headers = {"Authorization": "Bearer kiln_some-key"}
    with TestClient(
        create_app(settings, run_reaper=False), raise_server_exceptions=False
    ) as client:
        for method, path in [
            ("GET", "/v1/datasets"),
            ("GET", "/v1/jobs/1"),
            ("POST", "/v1/models/m/predict"),
            ("POST", "/v2/models/m/infer"),
        ]:
            answer = client.request(method, path, headers=headers, json={"inputs": [[1.0]]})
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["retry-after"] == "2"
            body = answer.json()
            assert "registry database is unavailable" in body.get("detail", body.get("error"))
        assert client.get("/v2/health/live").status_code == 200

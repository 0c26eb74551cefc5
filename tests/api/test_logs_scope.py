"""Issue #42: the request log holds clients' raw inputs, so reading it needs the ``logs``
scope, which read and write keys do not have: a key gets it only when created with it
(``logs``, ``read+logs``, ``write+logs``), and admin has it. A dataset made from the log
needs ``write+logs``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from app.main import create_app
from tests.conftest import bearer, make_settings, register

LABELS = {"labels": ("labels.csv", b"request_id,label\nr1,yes\n", "text/csv")}


@pytest.fixture
def logged(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> Iterator[TestClient]:
    """A gateway logging every request, with one request logged and flushed."""
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    overridden = make_settings(settings.data_dir, settings.database_url, log_sample=1.0)
    with TestClient(
        create_app(overridden, run_reaper=False), raise_server_exceptions=False
    ) as client:
        answer = client.post(
            "/v1/models/flowers/predict",
            headers={**admin, "x-request-id": "r1"},
            json={"inputs": [[1.0, 2.0, 3.0, 4.0]]},
        )
        assert answer.status_code == 200, answer.text
        gateway_of(client.app).monitors.flush()  # type: ignore[arg-type]
        yield client


@pytest.mark.parametrize("scope", ["read", "write", "infer"])
def test_read_and_write_keys_no_longer_read_the_log(
    logged: TestClient, keys: dict[str, str], scope: str
) -> None:
    headers = bearer(keys[scope])
    for path in ("/v1/models/flowers/logs", "/v1/models/flowers/logs/1"):
        refused = logged.get(path, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"].endswith(f"has scope '{scope}'; this route needs 'logs'")
    made = logged.post(
        "/v1/datasets/from-log", headers=headers, data={"model": "flowers"}, files=LABELS
    )
    assert made.status_code == 403 and "this route needs 'write+logs'" in made.json()["detail"]


@pytest.mark.parametrize("scope", ["logs", "read+logs", "write+logs", "admin"])
def test_a_key_created_with_logs_reads_the_log(
    logged: TestClient, keys: dict[str, str], scope: str
) -> None:
    headers = bearer(keys[scope])
    [part] = logged.get("/v1/models/flowers/logs", headers=headers).json()
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=headers)
    assert download.status_code == 200 and download.content.startswith(b"PAR1")
    made = logged.post(
        "/v1/datasets/from-log", headers=headers, data={"model": "flowers"}, files=LABELS
    )
    if scope in ("write+logs", "admin"):  # past the guard: one labelled row is too few
        assert made.status_code not in (401, 403), made.text
    else:
        assert made.status_code == 403 and "needs 'write+logs'" in made.json()["detail"]


def test_logs_is_granted_only_explicitly(logged: TestClient, keys: dict[str, str]) -> None:
    """A logs key reads the log and nothing else; read+logs reads both; an admin makes
    either through POST /v1/keys."""
    logs_only = bearer(keys["logs"])
    assert logged.get("/v1/models", headers=logs_only).status_code == 403
    assert logged.get("/v1/models", headers=bearer(keys["read+logs"])).status_code == 200
    admin = bearer(keys["admin"])
    created = logged.post(
        "/v1/keys", headers=admin, json={"name": "labeller", "scope": "write+logs"}
    )
    assert created.status_code == 201 and created.json()["scope"] == "write+logs"
    labeller = bearer(created.json()["key"])
    assert logged.get("/v1/models/flowers/logs", headers=labeller).status_code == 200
    refused = logged.post("/v1/keys", headers=admin, json={"name": "x", "scope": "logs+admin"})
    assert refused.status_code == 422

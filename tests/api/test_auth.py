"""API keys and scopes on every kind of route."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import session_scope
from app.tables import ApiKey
from tests.conftest import bearer
from tests.helpers import blobs_csv


def test_open_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/jobs", "/v1/models", "/v1/keys"])
def test_v1_without_key_is_401(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in response.json()["detail"]


def test_wrong_key_is_401(client: TestClient, keys: dict) -> None:
    response = client.get("/v1/datasets", headers=bearer("kiln_not-a-real-key"))
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked API key"


SCOPE_CASES = [
    # scope, method, path, allowed
    ("read", "GET", "/v1/datasets", True),
    ("read", "POST", "/v1/datasets", False),
    ("read", "GET", "/v1/keys", False),
    ("infer", "GET", "/v1/datasets", False),
    ("infer", "POST", "/v1/models/any/predict", True),
    ("read", "POST", "/v1/models/any/predict", False),
    ("write", "POST", "/v1/models/any/predict", True),
    ("write", "GET", "/v1/keys", False),
    ("admin", "GET", "/v1/keys", True),
]


@pytest.mark.parametrize(("scope", "method", "path", "allowed"), SCOPE_CASES)
def test_scope_rules(
    client: TestClient, keys: dict, scope: str, method: str, path: str, allowed: bool
) -> None:
    kwargs: dict = {}
    if method == "POST" and path == "/v1/datasets":
        kwargs = {
            "files": {"file": ("d.csv", blobs_csv(), "text/csv")},
            "data": {"target": "label"},
        }
    elif method == "POST":
        kwargs = {"json": {"inputs": [[1.0]]}}
    response = client.request(method, path, headers=bearer(keys[scope]), **kwargs)
    if allowed:
        assert response.status_code not in (401, 403)
    else:
        assert response.status_code == 403
        assert f"has scope '{scope}'" in response.json()["detail"]


def test_admin_creates_lists_and_revokes_keys(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    created = client.post("/v1/keys", headers=admin, json={"name": "ci", "scope": "read"})
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("kiln_") and len(secret) >= 43
    assert client.get("/v1/datasets", headers=bearer(secret)).status_code == 200
    listed = client.get("/v1/keys", headers=admin).json()
    assert all("key" not in row for row in listed)
    with session_scope(settings.database_url) as session:
        stored = [row.key_hash for row in session.scalars(select(ApiKey))]
    assert secret not in stored and all(len(value) == 64 for value in stored)
    revoked = client.delete(f"/v1/keys/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/v1/datasets", headers=bearer(secret)).status_code == 401


def test_bad_key_requests_are_named(client: TestClient, admin: dict) -> None:
    response = client.post("/v1/keys", headers=admin, json={"name": "x", "scope": "root"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "scope"]
    assert client.delete("/v1/keys/999999", headers=admin).status_code == 404

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


def admin_key_ids(settings: Settings) -> list[int]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(ApiKey.id).where(ApiKey.scope == "admin", ApiKey.revoked_at.is_(None))
        )
        return sorted(rows)


def test_the_last_admin_key_cannot_be_revoked(
    client: TestClient, admin: dict, keys: dict, settings: Settings
) -> None:
    """Not by itself, not by anyone: after it only shell access could make a key. Other
    keys, and an admin key while another admin key remains (its own included), may go."""
    [only] = admin_key_ids(settings)
    refused = client.delete(f"/v1/keys/{only}", headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"API key {only} ('test-admin') is the last admin key; create another admin key "
        "(POST /v1/keys with scope admin) before revoking this one"
    )
    assert client.get("/v1/keys", headers=admin).status_code == 200  # still works
    second = client.post("/v1/keys", headers=admin, json={"name": "second", "scope": "admin"})
    assert second.status_code == 201
    itself = client.delete(f"/v1/keys/{only}", headers=admin)  # its own, not the last
    assert itself.status_code == 200 and itself.json()["revoked_at"] is not None
    assert client.get("/v1/keys", headers=admin).status_code == 401
    other = bearer(second.json()["key"])
    again = client.delete(f"/v1/keys/{only}", headers=other)  # revoked already: the same
    assert again.status_code == 200 and again.json()["revoked_at"] == itself.json()["revoked_at"]
    last = client.delete(f"/v1/keys/{second.json()['id']}", headers=other)
    assert last.status_code == 409 and "is the last admin key" in last.text
    write = client.get("/v1/keys", headers=other).json()
    write_id = next(row["id"] for row in write if row["name"] == "test-write")
    assert client.delete(f"/v1/keys/{write_id}", headers=other).status_code == 200
    assert admin_key_ids(settings) == [second.json()["id"]]


def test_two_admin_keys_revoking_each_other_at_once_leave_one(
    client: TestClient, admin: dict, settings: Settings
) -> None:
    """Each of two admin keys revokes the other at the same moment, ten times: one
    revocation wins and the other is refused, never both (which would leave none)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    [first] = admin_key_ids(settings)
    holders = {first: admin}
    with ThreadPoolExecutor(2) as pool:
        for round_ in range(10):
            created = client.post(
                "/v1/keys", headers=admin, json={"name": f"peer-{round_}", "scope": "admin"}
            )
            assert created.status_code == 201
            holders[created.json()["id"]] = bearer(created.json()["key"])
            a, b = admin_key_ids(settings)
            start = threading.Barrier(2)

            def revoke(target: int, by: int, start: threading.Barrier = start) -> int:
                start.wait()
                return client.delete(f"/v1/keys/{target}", headers=holders[by]).status_code

            answers = sorted(
                future.result(timeout=60)
                for future in [pool.submit(revoke, a, b), pool.submit(revoke, b, a)]
            )
            # The loser is refused as the last admin key (409), or, when the winner's
            # revocation of it showed first, as a revoked key (401).
            assert answers in ([200, 409], [200, 401]), answers
            assert len(admin_key_ids(settings)) == 1
            admin = holders[admin_key_ids(settings)[0]]

"""CORS: off unless origins are configured; a configuration that would let any page call
the API with a visitor's credentials is refused at start-up, naming the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, SettingsError, load_settings
from app.main import create_app
from tests.conftest import make_settings

PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def test_cors_is_off_by_default(client: TestClient, admin: dict) -> None:
    preflight = client.options("/v1/models/any/predict", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.get("/v1/models", headers={**admin, "Origin": "https://evil.example"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_configured_origins_and_only_they_are_allowed(
    tmp_path: Path, database_url: str, keys: dict, settings: Settings
) -> None:
    configured = make_settings(
        tmp_path / "cors",
        database_url,
        cors_origins="https://app.example.com, http://localhost:3000",
    )
    with TestClient(create_app(configured, run_reaper=False)) as client:
        preflight = client.options("/v1/models/any/predict", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "access-control-allow-credentials" not in preflight.headers
        other = client.options(
            "/v1/models/any/predict", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        # The inference fast path answers go through CORS too (here a 404 for no model).
        answer = client.post(
            "/v1/models/any/predict",
            json={"inputs": [[1.0]]},
            headers={"Authorization": f"Bearer {keys['infer']}", "Origin": "http://localhost:3000"},
        )
        assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"


@pytest.mark.parametrize(
    ("origins", "credentials", "message"),
    [
        ("*", True, "KILN_CORS_ORIGINS: * together with KILN_CORS_CREDENTIALS=true"),
        ("https://app.example.com/path", False, "is not an origin"),
        ("app.example.com", False, "is not an origin"),
    ],
)
def test_unsafe_or_malformed_cors_settings_are_refused(
    tmp_path: Path, origins: str, credentials: bool, message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(data_dir=tmp_path, cors_origins=origins, cors_credentials=credentials)

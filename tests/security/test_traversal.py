"""Path traversal: model names, aliases and artifact keys in every spelling a client or an
attacker might send (``..``, percent-encoded, double-encoded, absolute, NUL, backslash).
Nothing outside the registry is ever read or written; each attempt gets a 4xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.storage import get_store
from app.storage.base import check_key
from tests.conftest import register

NAMES = [
    "..",
    "%2e%2e",
    "%252e%252e",
    "..%2f..%2fetc%2fpasswd",
    "%2fetc%2fpasswd",
    "a%00b",
    "..%5c..%5cwindows",
    "%2e%2e%2f",
    ".hidden",
    "a" * 65,
    "-dash-first",
]


@pytest.fixture
def served(client: TestClient, settings: Settings, classifier_onnx: Path) -> TestClient:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    return client


@pytest.mark.parametrize("name", NAMES)
def test_reads_by_odd_names_find_nothing(served: TestClient, admin: dict, name: str) -> None:
    for path in (
        f"/v1/models/{name}",
        f"/v1/models/{name}/versions/1/artifact",
        f"/v1/models/flowers/aliases/{name}/history",
    ):
        answer = served.get(path, headers=admin)
        assert answer.status_code in (404, 405, 422), (path, answer.status_code)
        assert b"root:" not in answer.content and b"Traceback" not in answer.content
    assert served.get("/v1/models/flowers/versions/1/artifact", headers=admin).status_code == 200


@pytest.mark.parametrize("name", NAMES)
def test_writes_under_odd_names_are_refused(
    served: TestClient, admin: dict, name: str, classifier_onnx: Path, settings: Settings
) -> None:
    upload = served.post(
        f"/v1/models/{name}/versions",
        headers=admin,
        files={"file": ("m.onnx", classifier_onnx.read_bytes())},
    )
    assert upload.status_code in (404, 405, 422), upload.text
    alias = served.put(f"/v1/models/flowers/aliases/{name}", headers=admin, json={"version": 1})
    assert alias.status_code in (404, 405, 422), alias.text
    uploads = settings.data_dir / "artifacts" / "uploads"
    assert not uploads.exists() or [p.name for p in uploads.iterdir()] == []


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a\x00b", "a\\..\\b", "", "a//b/../../c", "~/x"]
)
def test_the_store_refuses_keys_that_could_escape(settings: Settings, key: str) -> None:
    with pytest.raises(ValueError, match="invalid artifact key"):
        check_key(key)
    store = get_store(settings)
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")


def test_the_local_stores_own_write_area_is_no_key(tmp_path: Path) -> None:
    """Writes in progress live under ``.writing``; no artifact key can name it (a key's
    segments never start with a dot)."""
    from app.storage.base import InvalidArtifactKey
    from app.storage.local import WRITING, LocalArtifactStore

    store = LocalArtifactStore(tmp_path)
    with pytest.raises(InvalidArtifactKey):
        store.put_bytes(f"{WRITING}/x", b"x")
    assert not list((tmp_path / WRITING).iterdir())

"""Header limits at the app's edge, ahead of the inference fast path and FastAPI alike: a
request whose headers pass ``MAX_HEADER_BYTES`` gets a 431 naming the largest header, a
route key past ``MAX_ROUTE_KEY_CHARS`` a 400 naming ``x-kiln-route-key``, in each route's
error shape. Checked in process and against a live ``kiln serve`` (uvicorn's httptools
parser sets no header bound of its own: a 1 MB route key used to be hashed and served)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.limits import MAX_HEADER_BYTES, MAX_ROUTE_KEY_CHARS
from app.contracts.traffic import ROUTE_KEY_HEADER
from app.core.config import Settings
from tests.fixtures.servers import ServerFactory
from tests.security.walked import register_walked

ROW = {"inputs": [[1.0, 2.0, 3.0, 4.0]]}
V2 = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
# (method, path, body, the key of the error body): the fast path's two protocols, a
# documented route, and the dashboard is left out (its pages answer HTML).
ROUTES = [
    ("POST", "/v1/models/walked/predict", ROW, "detail"),
    ("POST", "/v2/models/walked/infer", V2, "error"),
    ("GET", "/v1/models/walked", None, "detail"),
    ("GET", "/v2/health/live", None, "error"),
]


@pytest.fixture
def served(client: TestClient, settings: Settings, tmp_path: Path) -> TestClient:
    register_walked(settings, tmp_path)
    return client


@pytest.mark.parametrize(("method", "path", "body", "key"), ROUTES)
def test_a_megabyte_route_key_is_431_naming_it(
    served: TestClient, admin: dict, method: str, path: str, body: object, key: str
) -> None:
    headers = {**admin, ROUTE_KEY_HEADER: "k" * 1_000_000}
    answer = served.request(method, path, json=body, headers=headers)
    assert answer.status_code == 431, answer.text
    message = answer.json()[key]
    assert ROUTE_KEY_HEADER in message and str(MAX_HEADER_BYTES) in message


@pytest.mark.parametrize(("method", "path", "body", "key"), ROUTES)
def test_a_long_route_key_is_400_naming_it(
    served: TestClient, admin: dict, method: str, path: str, body: object, key: str
) -> None:
    too_long = {**admin, ROUTE_KEY_HEADER: "k" * (MAX_ROUTE_KEY_CHARS + 1)}
    answer = served.request(method, path, json=body, headers=too_long)
    assert answer.status_code == 400, answer.text
    assert answer.json()[key].startswith(f"{ROUTE_KEY_HEADER}: at most {MAX_ROUTE_KEY_CHARS}")
    longest = {**admin, ROUTE_KEY_HEADER: "k" * MAX_ROUTE_KEY_CHARS}
    assert served.request(method, path, json=body, headers=longest).status_code == 200


def test_any_header_past_the_limit_is_431_naming_it(served: TestClient, admin: dict) -> None:
    answer = served.get("/v1/models", headers={**admin, "x-padding": "p" * MAX_HEADER_BYTES})
    assert answer.status_code == 431
    assert "'x-padding'" in answer.json()["detail"]
    assert served.get("/v1/models", headers={**admin, "x-padding": "p" * 8000}).status_code == 200


def test_a_live_server_answers_a_megabyte_route_key(kiln_server: ServerFactory) -> None:
    """Through uvicorn (httptools, as ``kiln serve`` runs it), not only the ASGI app: the
    client gets its answer rather than a closed connection."""
    server = kiln_server(workers=0)
    with server.client() as client:
        for method, path, body, key in ROUTES:
            answer = client.request(
                method, path, json=body, headers={ROUTE_KEY_HEADER: "k" * 1_000_000}
            )
            assert answer.status_code == 431, (path, answer.text)
            assert ROUTE_KEY_HEADER in answer.json()[key]
        assert client.get("/v1/models").status_code == 200  # and goes on serving
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        answer = anonymous.get("/v2/health/live", headers={ROUTE_KEY_HEADER: "k" * 300})
        assert answer.status_code == 400 and ROUTE_KEY_HEADER in answer.json()["error"]

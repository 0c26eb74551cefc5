"""A method a path does not document gets a 405 whose ``Allow`` names every method the
OpenAPI document gives that path (FastAPI makes one route per method, and Starlette named
only the first route's); and a static path is never read as another route's path
parameter: ``GET /v1/jobs/predict`` is a 405 naming ``POST``, not a 422 for a job id
``'predict'``. Walked from the document, so a new path is covered as soon as it exists."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.security.walked import url

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _documented(app: FastAPI) -> dict[str, set[str]]:
    return {
        path: {method.upper() for method in operations}
        for path, operations in app.openapi()["paths"].items()
    }


def test_a_405_names_every_documented_method(client: TestClient, app: FastAPI, admin: dict) -> None:
    wrong = []
    documented = _documented(app)
    for template, methods in documented.items():
        path = url(template)
        for method in sorted(set(METHODS) - methods):
            answer = client.request(method, path, headers=admin)
            allow = set(answer.headers.get("allow", "").split(", "))
            if answer.status_code != 405 or allow != methods:
                wrong.append(f"{method} {path}: {answer.status_code}, Allow: {allow}")
    assert len(documented) > 30
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/jobs/predict", "POST"),
        ("DELETE", "/v1/jobs/predict", "POST"),
        ("GET", "/v1/datasets/from-log", "POST"),
        ("DELETE", "/v1/datasets/from-log", "POST"),
        ("OPTIONS", "/v1/jobs/predict", "POST"),
        ("GET", "/v1/models/walked:explain", "POST"),  # a verb's path: no name holds ':'
        ("PATCH", "/v1/models/walked:explain", "POST"),
        ("DELETE", "/v1/models/walked:explain", "POST"),
        ("OPTIONS", "/v1/models/walked:explain", "POST"),
    ],
)
def test_a_static_path_is_not_a_path_parameter(
    client: TestClient, admin: dict, method: str, path: str, allow: str
) -> None:
    answer = client.request(method, path, headers=admin)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == allow
    assert answer.json() == {"detail": "Method Not Allowed"}


def test_path_parameters_still_match_their_own_values(client: TestClient, admin: dict) -> None:
    assert client.get("/v1/jobs/7", headers=admin).status_code == 404
    assert client.get("/v1/datasets/7", headers=admin).status_code == 404
    assert client.get("/v1/jobs/predicted", headers=admin).status_code == 422  # not an id

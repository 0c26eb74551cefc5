"""Aliases with history, archiving and tags; moving ``production`` under load."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import register

ROW = {"inputs": [[6, 6, 6, 6]]}


@pytest.fixture
def two_versions(settings: Settings, classifier_onnx: Path) -> None:
    register(settings, classifier_onnx, labels=["a1", "b1", "c1"])
    register(settings, classifier_onnx, labels=["a2", "b2", "c2"])


def served(client: TestClient, headers: dict) -> tuple[int, object]:
    body = client.post("/v1/models/flowers/predict", headers=headers, json=ROW).json()
    return body["version"], body["predictions"][0]


def test_without_production_compression_variants_never_take_over_serving(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a1", "b1", "c1"], source="search")
    register(settings, classifier_onnx, labels=["a2", "b2", "c2"], source="compression")
    register(settings, classifier_onnx, labels=["a3", "b3", "c3"], source="compression")
    assert served(client, admin) == (1, "c1")  # the searched one, not the newer variants
    assert client.get("/v1/models/flowers", headers=admin).json()["serving_version"] == 1
    assert client.post("/v1/models/flowers/predict?version=3", headers=admin, json=ROW).json()[
        "predictions"
    ] == ["c3"]
    client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 2})
    assert served(client, admin) == (2, "c2")  # promoted on purpose
    assert client.get("/v1/models/flowers", headers=admin).json()["serving_version"] == 2
    register(settings, classifier_onnx, labels=["a4", "b4", "c4"], source="search")
    client.delete("/v1/models/flowers/aliases/production", headers=admin)
    assert served(client, admin) == (4, "c4")  # the newest searched one


def test_production_alias_decides_what_serves(
    client: TestClient, admin: dict, two_versions: None
) -> None:
    assert served(client, admin) == (1, "c1")  # the first version took it; v2 left it there
    assert client.get("/v1/models/flowers", headers=admin).json()["aliases"] == {"production": 1}
    moved = client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 2})
    assert moved.status_code == 200 and moved.json()["version"] == 2
    assert served(client, admin) == (2, "c2")  # next request, no restart
    client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 1})
    assert served(client, admin) == (1, "c1")
    assert client.delete("/v1/models/flowers/aliases/production", headers=admin).status_code == 204
    history = client.get("/v1/models/flowers/aliases/production/history", headers=admin).json()
    assert [entry["version"] for entry in history] == [1, 2, 1]
    assert all(entry["removed_at"] is not None for entry in history)
    assert history[1]["removed_at"] == history[0]["assigned_at"]


def test_a_first_version_takes_production_and_later_ones_leave_it(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a1", "b1", "c1"], source="search")
    [entry] = client.get("/v1/models/flowers/aliases/production/history", headers=admin).json()
    assert entry["version"] == 1 and entry["removed_at"] is None  # in the history from the start
    register(settings, classifier_onnx, labels=["a2", "b2", "c2"], source="search")
    register(settings, classifier_onnx, labels=["a3", "b3", "c3"], source="upload")
    assert served(client, admin) == (1, "c1")
    model = client.get("/v1/models/flowers", headers=admin).json()
    assert model["aliases"] == {"production": 1} and model["serving_version"] == 1
    history = client.get("/v1/models/flowers/aliases/production/history", headers=admin).json()
    assert len(history) == 1


def test_a_model_without_production_gets_it_on_what_served_at_its_next_registration(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    """A model whose alias was deleted, as one from before first versions took it: the
    newest searched or uploaded version serves until a registration pins the alias there."""
    register(settings, classifier_onnx, labels=["a1", "b1", "c1"], source="search")
    client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 1})
    register(settings, classifier_onnx, labels=["a2", "b2", "c2"], source="search")
    assert client.delete("/v1/models/flowers/aliases/production", headers=admin).status_code == 204
    assert served(client, admin) == (2, "c2")  # no alias: the newest searched version
    register(settings, classifier_onnx, labels=["a3", "b3", "c3"], source="search")
    assert served(client, admin) == (2, "c2")  # pinned where it was, not moved to v3
    history = client.get("/v1/models/flowers/aliases/production/history", headers=admin).json()
    assert history[0]["version"] == 2 and history[0]["removed_at"] is None


def test_archived_versions_stop_serving(
    client: TestClient, admin: dict, two_versions: None
) -> None:
    client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 2})
    held = client.delete("/v1/models/flowers/versions/2", headers=admin)
    assert (
        held.status_code == 409 and "shadowed) by alias(es) ['production']" in held.json()["detail"]
    )
    client.put("/v1/models/flowers/aliases/production", headers=admin, json={"version": 1})
    archived = client.delete("/v1/models/flowers/versions/2", headers=admin)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    pinned = client.post("/v1/models/flowers/predict?version=2", headers=admin, json=ROW)
    assert pinned.status_code == 404 and "archived" in pinned.json()["detail"]
    client.delete("/v1/models/flowers/aliases/production", headers=admin)
    assert served(client, admin) == (1, "c1")  # newest *live* version
    refused = client.put("/v1/models/flowers/aliases/staging", headers=admin, json={"version": 2})
    assert refused.status_code == 409 and "is archived" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "PUT",
            "/v1/models/flowers/aliases/9lives",
            {"version": 1},
            422,
            "alias '9lives' is not valid: a letter, then",
        ),
        ("PUT", "/v1/models/flowers/aliases/production", {"version": 9}, 404, "has no version 9"),
        (
            "PUT",
            "/v1/models/nope/aliases/production",
            {"version": 1},
            404,
            "model 'nope' not found",
        ),
        ("DELETE", "/v1/models/flowers/aliases/ghost", None, 404, "has no alias 'ghost'"),
        ("GET", "/v1/models/flowers/aliases/ghost/history", None, 404, "never had an alias"),
        (
            "PATCH",
            "/v1/models/flowers",
            {"tags": {"bad key!": "x"}},
            422,
            "tag key 'bad key!' is not valid",  # the request model's rule, its loc the key
        ),
        (
            "PATCH",
            "/v1/models/flowers",
            {"tags": {f"k{i}": "v" for i in range(51)}},
            422,
            "at most 50 tags",
        ),
        (
            "PATCH",
            "/v1/models/flowers/versions/1",
            {"tags": {"k": "v" * 300}},
            422,
            "at most 256 characters",
        ),
    ],
)
def test_bad_registry_requests_are_named(
    client: TestClient,
    admin: dict,
    two_versions: None,
    method: str,
    path: str,
    body: dict | None,
    status: int,
    message: str,
) -> None:
    response = client.request(method, path, headers=admin, json=body)
    assert response.status_code == status
    assert message in str(response.json()["detail"])  # a path's rule: FastAPI's list form
    assert served(client, admin) == (1, "c1")  # nothing changed


def test_alias_body_is_validated(client: TestClient, admin: dict, two_versions: None) -> None:
    response = client.put(
        "/v1/models/flowers/aliases/production", headers=admin, json={"version": 1, "force": True}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "force"]
    read_only = client.post("/v1/keys", headers=admin, json={"name": "r", "scope": "read"})
    headers = {"Authorization": f"Bearer {read_only.json()['key']}"}
    assert (
        client.put(
            "/v1/models/flowers/aliases/production", headers=headers, json={"version": 1}
        ).status_code
        == 403
    )


def test_tags_on_models_and_versions(client: TestClient, admin: dict, two_versions: None) -> None:
    tagged = client.patch(
        "/v1/models/flowers", headers=admin, json={"tags": {"team": "vision", "tier": "gold"}}
    )
    assert tagged.json()["tags"] == {"team": "vision", "tier": "gold"}
    untagged = client.patch("/v1/models/flowers", headers=admin, json={"tags": {"tier": None}})
    assert untagged.json()["tags"] == {"team": "vision"}
    version = client.patch(
        "/v1/models/flowers/versions/1", headers=admin, json={"tags": {"reviewed": "yes"}}
    )
    assert version.json()["tags"] == {"reviewed": "yes"}
    assert client.get("/v1/models/flowers/versions/2", headers=admin).json()["tags"] == {}


def test_moving_production_under_load_fails_no_request(
    client: TestClient, admin: dict, two_versions: None
) -> None:
    stop = threading.Event()
    answers: Counter[object] = Counter()
    failures: list[int] = []

    def load() -> None:
        while not stop.is_set():
            response = client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
            if response.status_code != 200:
                failures.append(response.status_code)
            else:
                answers[response.json()["predictions"][0]] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for move in range(20):
        client.put(
            "/v1/models/flowers/aliases/production", headers=admin, json={"version": 1 + move % 2}
        )
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert set(answers) == {"c1", "c2"}

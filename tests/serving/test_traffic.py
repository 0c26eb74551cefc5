"""Traffic policies through the real gateway app (httpx against ASGI, a real registry):
weights honoured within binomial bounds, stickiness by route key, the version that
answered named on every answer, a shadow compared off the response path (its slowness and
its failures never reach a client), the history keeping the weights, and the refusals."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.contracts.signature import Signature
from app.core.config import Settings
from app.core.db import session_scope
from app.registry.service import VersionDraft, register_version
from app.serving.observations import observation_bytes
from app.storage import get_store
from tests.conftest import BOUNDED, register

ROW = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
PREDICT = "/v1/models/flowers/predict"
ALIAS = "/v1/models/flowers/aliases/production"


@pytest.fixture
def three(settings: Settings, classifier_onnx: Path) -> None:
    for _ in range(3):
        register(settings, classifier_onnx, labels=["a", "b", "c"])


def answered_by(client: TestClient, admin: dict[str, str], key: str | None = None) -> int:
    headers = {**admin, **({"x-kiln-route-key": key} if key is not None else {})}
    response = client.post(PREDICT, headers=headers, json=ROW)
    assert response.status_code == 200, response.text
    version = int(response.headers["x-kiln-version"])
    assert version == response.json()["version"]
    return version


def test_weights_are_honoured_within_binomial_bounds(
    client: TestClient, admin: dict[str, str], three: None
) -> None:
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    response = client.put(ALIAS, headers=admin, json=split)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "flowers",
        "alias": "production",
        "version": 1,
        "versions": split["versions"],
        "shadow": None,
    }
    counts = Counter(answered_by(client, admin) for _ in range(2000))
    assert set(counts) == {1, 2}
    spread = 4.5 * math.sqrt(2000 * 0.1 * 0.9)  # 4.5 standard deviations: 1 in 150,000 fails
    assert abs(counts[2] - 200) < spread, counts
    assert answered_by(client, admin) in (1, 2)
    named = client.post(f"{PREDICT}?version=3", headers=admin, json=ROW)  # a version named
    assert named.headers["x-kiln-version"] == "3"  # goes where it asks, split or not


def test_a_version_not_loaded_yet_gets_its_weight_from_the_first_request(
    client: TestClient, admin: dict[str, str], three: None
) -> None:
    """One draw per request: a version not loaded yet (the cache cannot answer for it) is
    not drawn again, so it gets its share from the start, not its weight squared."""
    assert client.put(ALIAS, headers=admin, json={"version": 1}).status_code == 200
    for _ in range(20):  # version 1 loaded and cached; version 3 never asked for
        answered_by(client, admin)
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 3, "weight": 10}]}
    assert client.put(ALIAS, headers=admin, json=split).status_code == 200
    counts = Counter(answered_by(client, admin) for _ in range(100))
    assert counts[3] >= 3, counts  # Bin(100, 0.1) < 3: 1 in 500; drawn twice: most times


def test_a_route_key_always_sees_the_same_version(
    client: TestClient, admin: dict[str, str], three: None
) -> None:
    split = {"versions": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
    assert client.put(ALIAS, headers=admin, json=split).status_code == 200
    seen = {}
    for user in range(40):
        versions = {answered_by(client, admin, f"user-{user}") for _ in range(5)}
        assert len(versions) == 1, (user, versions)
        seen[user] = versions.pop()
    assert set(seen.values()) == {1, 2}  # the keys spread over both


def test_v2_names_the_version_too(client: TestClient, admin: dict[str, str], three: None) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6] * 4}]}
    client.put(ALIAS, headers=admin, json={"version": 2})
    response = client.post("/v2/models/flowers/infer", headers=admin, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-kiln-version"] == "2" and response.json()["model_version"] == "2"


def test_history_keeps_the_weights_and_the_shadow(
    client: TestClient, admin: dict[str, str], three: None
) -> None:
    client.put(ALIAS, headers=admin, json={"version": 1})
    split = [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]
    client.put(ALIAS, headers=admin, json={"versions": split, "shadow": 3})
    history = client.get(f"{ALIAS}/history", headers=admin).json()
    assert history[0]["versions"] == split and history[0]["shadow"] == 3
    assert history[0]["removed_at"] is None
    assert history[1]["versions"] is None and history[1]["version"] == 1
    assert history[1]["removed_at"] is not None
    assert client.get(ALIAS, headers=admin).json()["shadow"] == 3


def flushed(app: FastAPI) -> None:
    """Wait for the shadow's queue to empty, then write what the monitors measured."""
    monitors = gateway_of(app).monitors
    assert monitors.wait_idle(30)
    monitors.flush()


def shadow_stats(client: TestClient, app: FastAPI, admin: dict[str, str]) -> dict[str, Any]:
    flushed(app)
    traffic = client.get("/v1/models/flowers/traffic", headers=admin).json()
    [stats] = traffic["shadows"]
    return dict(stats)


def test_a_shadow_sees_a_copy_and_is_compared(
    client: TestClient, app: FastAPI, admin: dict[str, str], three: None
) -> None:
    assert client.put(ALIAS, headers=admin, json={"version": 1, "shadow": 3}).status_code == 200
    for _ in range(30):
        assert answered_by(client, admin) == 1  # the shadow never answers
    client.post(f"{PREDICT}?version=2", headers=admin, json=ROW)  # named: no copy
    stats = shadow_stats(client, app, admin)
    assert (stats["primary_version"], stats["shadow_version"]) == (1, 3)
    assert stats["requests"] == 30 and stats["rows"] == 30
    assert stats["agreement"] == 1.0 and stats["mean_abs_diff"] == 0.0  # the same graph
    assert stats["dropped"] == 0 and stats["failures"] == 0


def test_only_the_current_shadow_is_reported(
    client: TestClient, app: FastAPI, admin: dict[str, str], three: None
) -> None:
    assert client.put(ALIAS, headers=admin, json={"version": 1, "shadow": 3}).status_code == 200
    for _ in range(5):
        answered_by(client, admin)
    assert shadow_stats(client, app, admin)["rows"] == 5
    promoted = client.post(f"{ALIAS}/promote", headers=admin, json={"version": 3, "gate": "manual"})
    assert promoted.status_code == 200 and promoted.json()["promoted"]
    traffic = client.get("/v1/models/flowers/traffic", headers=admin).json()
    assert traffic["alias"]["version"] == 3 and traffic["alias"]["shadow"] is None
    assert traffic["shadows"] == []  # v3 is no one's shadow now
    assert client.put(ALIAS, headers=admin, json={"version": 3, "shadow": 2}).status_code == 200
    fresh = client.get("/v1/models/flowers/traffic", headers=admin).json()
    assert fresh["shadows"] == []  # nothing compared yet: the (1, 3) totals are not v2's
    for _ in range(4):
        assert answered_by(client, admin) == 3
    stats = shadow_stats(client, app, admin)
    assert (stats["primary_version"], stats["shadow_version"], stats["rows"]) == (3, 2, 4)


class Blocked:
    """A shadow model that waits for the test to let it run (or fails)."""

    def __init__(self, release: threading.Event, fail: bool = False) -> None:
        self.release, self.fail = release, fail
        self.task, self.columns = "classification", None

    def max_rows(self, gateway_limit: int) -> int:
        return gateway_limit

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.release.wait(60)
        if self.fail:
            raise RuntimeError("the shadow broke")
        rows = len(next(iter(feeds.values())))
        return np.tile(np.array([[0.0, 1.0, 0.0]], dtype=np.float32), (rows, 1))


@pytest.mark.parametrize("fail", [False, True])
def test_a_slow_or_failing_shadow_never_reaches_the_client(
    client: TestClient, app: FastAPI, admin: dict[str, str], three: None, fail: bool
) -> None:
    release = threading.Event()
    monitors = gateway_of(app).monitors
    monitors.shadow.resolve = lambda name, version: Blocked(release, fail)  # type: ignore[assignment,return-value]
    one_row = observation_bytes(
        {"input": np.zeros((1, 4), np.float32)}, np.zeros((1, 3), np.float32), 0
    )
    monitors.queue.max_bytes = 5 * one_row  # room for five copies of one row, in bytes
    assert client.put(ALIAS, headers=admin, json={"version": 1, "shadow": 2}).status_code == 200
    answers = [client.post(PREDICT, headers=admin, json=ROW) for _ in range(20)]
    # Every answer came back while the shadow was still blocked on its first copy.
    assert not release.is_set()
    assert all(a.status_code == 200 and a.json()["predictions"] == ["c"] for a in answers)
    release.set()
    stats = shadow_stats(client, app, admin)
    # The queue held five copies' bytes; the rest were dropped and counted.
    assert stats["dropped"] >= 10
    assert stats["requests"] + stats["dropped"] == 20
    if fail:
        assert stats["failures"] == stats["requests"] and stats["agreement"] is None
    else:
        assert stats["failures"] == 0 and stats["agreement"] == 0.0  # it said 'b', not 'c'


def register_other_signature(settings: Settings, classifier_onnx: Path) -> int:
    store = get_store(settings)
    with session_scope(settings.database_url) as session:
        artifact = store.put_file("test/flowers/other.onnx", classifier_onnx)
        signature = Signature.of_tensors(
            input_name="input", row_shape=(5,), output_name="output", width=3
        )
        draft = VersionDraft(
            task="classification",
            source="upload",
            artifact=artifact,
            class_labels=["a", "b", "c"],
            signature=signature,
            config=BOUNDED,
        )
        return register_version(session, "flowers", draft).version


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 20}]},
            422,
            "weights must sum to 100, got 70 + 20 = 90",
        ),
        (
            {"versions": [{"version": 1, "weight": 50}, {"version": 1, "weight": 50}]},
            422,
            "a version is listed twice",
        ),
        ({"version": 1, "versions": [{"version": 2, "weight": 100}]}, 422, "not both"),
        ({}, 422, "give either 'version' or 'versions'"),
        ({"version": 1, "shadow": 4}, 422, "shadow: version 4 cannot take version 1's requests"),
        (
            {"versions": [{"version": 1, "weight": 60}, {"version": 4, "weight": 40}]},
            422,
            "versions[1]: version 4 cannot take version 1's requests",
        ),
        ({"version": 1, "shadow": 1}, 422, "shadow: version 1 already answers"),
        ({"version": 3}, 409, "version 3 is archived"),
        ({"version": 1, "shadow": 3}, 409, "shadow: model 'flowers' version 3 is archived"),
        ({"version": 1, "shadow": 9}, 404, "shadow: model 'flowers' has no version 9"),
        ({"versions": [{"version": 1, "weight": 0}]}, 422, "weight"),
    ],
)
def test_refusals(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
    three: None,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    assert register_other_signature(settings, classifier_onnx) == 4
    assert client.delete("/v1/models/flowers/versions/3", headers=admin).status_code == 200
    client.put(ALIAS, headers=admin, json={"version": 2})
    response = client.put(ALIAS, headers=admin, json=body)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])
    assert client.get(ALIAS, headers=admin).json()["version"] == 2  # nothing changed
    assert answered_by(client, admin) == 2  # and it still serves


def test_a_version_with_a_weight_or_a_shadow_cannot_be_archived(
    client: TestClient, admin: dict[str, str], three: None
) -> None:
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}], "shadow": 3}
    client.put(ALIAS, headers=admin, json=split)
    for version in (2, 3):
        refused = client.delete(f"/v1/models/flowers/versions/{version}", headers=admin)
        assert refused.status_code == 409 and "production" in refused.json()["detail"]


def test_a_blocked_shadow_holds_up_neither_the_log_nor_a_shutdown(
    client: TestClient, app: FastAPI, admin: dict[str, str], three: None
) -> None:
    release = threading.Event()
    monitors = gateway_of(app).monitors
    monitors.shadow.resolve = lambda name, version: Blocked(release)  # type: ignore[assignment,return-value]
    assert client.put(ALIAS, headers=admin, json={"version": 1, "shadow": 2}).status_code == 200
    logged = client.put("/v1/models/flowers/serving", headers=admin, json={"log_sample": 1.0})
    assert logged.status_code == 200, logged.text
    for _ in range(10):
        assert client.post(PREDICT, headers=admin, json=ROW).status_code == 200
    kept, deadline = 0, time.monotonic() + 10
    while kept < 10 and time.monotonic() < deadline:  # while the shadow's thread is blocked
        monitors.work()
        kept += sum(len(entries) for entries in monitors.log.take().values())
    assert kept == 10 and not release.is_set()
    started = time.monotonic()
    monitors.shadow.stop(timeout_s=0.5)  # waiting copies dropped, the running one left
    assert time.monotonic() - started < 2
    release.set()

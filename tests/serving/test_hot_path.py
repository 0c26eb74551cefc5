"""The predict hot path: no database work once a key and a version are known, changes made
through the gateway visible on the next request, others' changes within the TTL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.api.state import gateway_of
from app.core.config import Settings
from app.core.db import get_engine, session_scope
from app.main import create_app
from app.registry.aliases import set_alias
from app.serving.directory import ServingDirectory
from app.serving.runtime import ModelSource
from tests.conftest import make_settings, register

ROW = {"inputs": [[6, 6, 6, 6]]}


@pytest.fixture
def statements(settings: Settings) -> Iterator[list[str]]:
    """Every SQL statement the registry engine runs while the test does, but those of the
    monitors' thread (off the request path: it reads a version's training profile once,
    and writes what it measured)."""
    seen: list[str] = []
    engine = get_engine(settings.database_url)

    def record(*args: object) -> None:
        if threading.current_thread().name != "kiln-monitors":
            seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_repeated_predicts_touch_no_database(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    statements: list[str],
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    assert client.post("/v1/models/flowers/predict", headers=admin, json=ROW).status_code == 200
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6, 6, 6, 6]}]
    }
    assert client.post("/v2/models/flowers/infer", headers=admin, json=body).status_code == 200
    statements.clear()
    for _ in range(20):
        assert client.post("/v1/models/flowers/predict", headers=admin, json=ROW).json()[
            "predictions"
        ] == ["c"]
        assert client.post("/v2/models/flowers/infer", headers=admin, json=body).status_code == 200
    assert statements == []


def test_revoked_key_stops_at_once(
    client: TestClient, admin: dict, keys: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    created = client.post("/v1/keys", headers=admin, json={"name": "app", "scope": "infer"})
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    assert client.post("/v1/models/flowers/predict", headers=key, json=ROW).status_code == 200
    client.delete(f"/v1/keys/{created.json()['id']}", headers=admin)
    refused = client.post("/v1/models/flowers/predict", headers=key, json=ROW)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_other_processes_changes_show_after_the_ttl(
    tmp_path: Path, database_url: str, settings: Settings, keys: dict, classifier_onnx: Path
) -> None:
    tuned = make_settings(tmp_path, database_url, serving_cache_s=0)
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with TestClient(create_app(tuned, run_reaper=False)) as client:
        register(tuned, classifier_onnx, labels=["a1", "b1", "c1"])
        assert (
            client.post("/v1/models/flowers/predict", headers=admin, json=ROW).json()["version"]
            == 1
        )
        register(tuned, classifier_onnx, labels=["a2", "b2", "c2"])  # as a worker would
        with session_scope(tuned.database_url) as session:  # and a promotion elsewhere
            set_alias(session, name="flowers", alias="production", version=2)
        assert (
            client.post("/v1/models/flowers/predict", headers=admin, json=ROW).json()["version"]
            == 2
        )


def test_a_lookup_racing_an_invalidation_is_not_cached(
    settings: Settings, app: FastAPI, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    directory: ServingDirectory = gateway_of(app).directory
    original = directory._resolve

    def resolve_then_invalidate(name: str, version: int | None) -> Any:
        served = original(name, version)
        directory.invalidate()  # a write committed while this lookup read the registry
        return served

    directory._resolve = resolve_then_invalidate  # type: ignore[method-assign]
    directory.target("flowers", None)
    assert directory.cached_target("flowers", None) is None


def put_batching(client: TestClient, admin: dict, body: dict) -> httpx.Response:
    return client.put("/v1/models/flowers/serving", headers=admin, json=body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_batch_size": 1}, "max_batch_size"),
        ({"max_batch_size": 8, "max_queue_delay_ms": 5000}, "max_queue_delay_ms"),
        ({"max_batch_size": 8, "batch": 3}, "batch"),
        ({"max_batch_size": "many"}, "max_batch_size"),
    ],
)
def test_bad_batching_options_are_refused(
    client: TestClient,
    admin: dict,
    settings: Settings,
    classifier_onnx: Path,
    body: dict,
    message: str,
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    refused = put_batching(client, admin, body)
    assert refused.status_code == 422 and message in refused.text
    assert client.get("/v1/models/flowers", headers=admin).json()["serving"] is None


def test_dynamic_batching_merges_concurrent_requests(
    client: TestClient, app: FastAPI, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    rows = [[float(i % 7), 1.0, float(i % 3) * 3, 2.0] for i in range(24)]
    unbatched = [
        client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [row]}).json()
        for row in rows
    ]
    options = {"max_batch_size": 8, "max_queue_delay_ms": 200.0}
    set_ = put_batching(client, admin, options)
    assert set_.status_code == 200
    assert set_.json()["serving"] == {**options, "log_sample": None, "drift_threshold": None}

    async def concurrently() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kiln") as http:
            answers = await asyncio.gather(
                *[
                    http.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [row]})
                    for row in rows
                ]
            )
        return [answer.json() for answer in answers]

    batched = asyncio.run(concurrently())
    assert [answer["predictions"] for answer in batched] == [
        answer["predictions"] for answer in unbatched
    ]
    for one, other in zip(batched, unbatched, strict=True):
        assert one["probabilities"][0] == pytest.approx(other["probabilities"][0], abs=1e-6)
    target = gateway_of(app).directory.cached_target("flowers", None)
    assert target is not None
    batcher = target.batcher
    assert batcher is not None and batcher.batches_run <= len(rows) // 2

    assert put_batching(client, admin, {"max_batch_size": None}).json()["serving"] is None
    assert gateway_of(app).directory.cached_target("flowers", None) is None  # invalidated
    client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
    target = gateway_of(app).directory.cached_target("flowers", None)
    assert target is not None and target.batcher is None


def wait_for_preload(app: FastAPI, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not gateway_of(app).preload.done and time.monotonic() < deadline:
        time.sleep(0.05)


def test_preloaded_models_are_loaded_before_ready(
    tmp_path: Path, database_url: str, settings: Settings, classifier_onnx: Path
) -> None:
    tuned = make_settings(tmp_path, database_url, preload_models="*")
    register(tuned, classifier_onnx, labels=["a", "b", "c"])
    register(tuned, classifier_onnx, name="irises", labels=["a", "b", "c"])
    app = create_app(tuned, run_reaper=False)
    assert TestClient(app).get("/v2/health/ready").status_code == 503  # not started yet
    with TestClient(app) as client:
        wait_for_preload(app)
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert sorted(gateway_of(app).preload.loaded) == ["flowers", "irises"]
        assert len(gateway_of(app).sessions.loaded()) == 2


def test_preload_skips_models_that_cannot_load(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    tuned = make_settings(tmp_path, database_url, preload_models="nosuchmodel")
    app = create_app(tuned, run_reaper=False)
    with TestClient(app) as client:
        wait_for_preload(app)
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert "nosuchmodel" in gateway_of(app).preload.failed["nosuchmodel"]


def test_a_slow_load_does_not_hold_up_other_models(
    client: TestClient, app: FastAPI, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    register(settings, classifier_onnx, name="irises", labels=["x", "y", "z"])
    assert client.post("/v1/models/flowers/predict", headers=admin, json=ROW).status_code == 200
    cache = gateway_of(app).sessions
    original, release = cache._load, threading.Event()

    def slow_load(source: ModelSource, threads: int | None = None) -> Any:
        release.wait(30)  # irises takes as long as the test wants
        return original(source, threads)

    cache._load = slow_load  # type: ignore[method-assign]
    slow = concurrent.futures.ThreadPoolExecutor(1).submit(
        client.post, "/v1/models/irises/predict", headers=admin, json=ROW
    )
    try:
        for _ in range(20):  # flowers keeps answering while irises is loading
            answer = client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
            assert answer.json()["predictions"] == ["c"]
        assert not slow.done()
    finally:
        release.set()
    assert slow.result(timeout=30).json()["predictions"] == ["z"]


def test_what_start_up_made_is_frozen_out_of_the_collectors_way(settings: Settings) -> None:
    """A full collection over the start-up heap paused the event loop for 100 ms: the
    gateway freezes it (gc.freeze) before it serves."""
    import gc

    with TestClient(create_app(settings, run_reaper=False)):
        assert gc.get_freeze_count() > 10_000

"""What explanations store goes with what it belongs to: deleting a version's artifact
deletes its explanation file (kept while a variant that reuses it keeps its artifact) and
drops its cached explainer; a background sent again replaces the file it had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.explain import explainers_of
from app.core.config import Settings
from app.core.db import session_scope
from app.explain.data import ExplainRecord
from app.registry.service import VersionDraft, get_version, register_version
from app.storage import get_store
from tests.conftest import BOUNDED, bearer, register

NAME = "kept"


def _version(settings: Settings, number: int) -> tuple[int, ExplainRecord | None]:
    """A version's id and its explanation record."""
    with session_scope(settings.database_url) as session:
        version = get_version(session, NAME, number)
        return version.id, ExplainRecord.of(version.metrics)


def _put_background(client: TestClient, keys: dict[str, str], rows: list[list[float]]) -> None:
    response = client.put(
        f"/v1/models/{NAME}/versions/2/explain/background",
        json={"inputs": rows},
        headers=bearer(keys["write"]),
    )
    assert response.status_code == 200, response.text


def _register_variant(settings: Settings, parent_id: int) -> int:
    """A compression variant of ``parent_id`` (same graph), as a compression job registers."""
    with session_scope(settings.database_url) as session:
        parent = get_version(session, NAME, 2)
        store = get_store(settings)
        artifact = store.put_bytes(
            f"test/{NAME}/variant.onnx", store.read_bytes(parent.artifact_key, parent.sha256)
        )
        variant = register_version(
            session,
            NAME,
            VersionDraft(
                task="classification",
                source="compression",
                artifact=artifact,
                signature=parent.signature,
                class_labels=parent.class_labels,
                config=BOUNDED,
                parent_version_id=parent_id,
                method="quantize",
            ),
        )
        return variant.version


def _delete_artifact(client: TestClient, admin: dict[str, str], number: int) -> None:
    archived = client.delete(f"/v1/models/{NAME}/versions/{number}", headers=admin)
    assert archived.status_code == 200, archived.text
    deleted = client.delete(f"/v1/models/{NAME}/versions/{number}/artifact", headers=admin)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["artifact_deleted_at"] is not None


def test_deleting_an_artifact_deletes_its_explanation_file_and_explainer(
    settings: Settings,
    app: FastAPI,
    client: TestClient,
    keys: dict[str, str],
    admin: dict[str, str],
    classifier_onnx: Path,
) -> None:
    store = get_store(settings)
    register(settings, classifier_onnx, name=NAME, labels=["a", "b", "c"])  # production
    register(settings, classifier_onnx, name=NAME, labels=["a", "b", "c"])
    rows = np.random.default_rng(0).normal(size=(8, 4)).round(3).tolist()
    _put_background(client, keys, rows)
    version_id, first = _version(settings, 2)
    assert first is not None and store.exists(first.key)
    _put_background(client, keys, rows[:4])  # the file it replaces goes
    _, second = _version(settings, 2)
    assert second is not None and second.key != first.key
    assert store.exists(second.key) and not store.exists(first.key)

    variant = _register_variant(settings, version_id)
    _, inherited = _version(settings, variant)
    assert inherited is not None and inherited.key == second.key

    explained = client.post(
        f"/v1/models/{NAME}/explain?version=2",
        json={"inputs": rows[:1]},
        headers=bearer(keys["infer"]),
    )
    assert explained.status_code == 200, explained.text
    cache = explainers_of(app)
    assert cache.get(version_id) is not None

    _delete_artifact(client, admin, 2)
    assert cache.get(version_id) is None
    assert store.exists(second.key)  # the variant, still kept, explains itself with it

    _delete_artifact(client, admin, variant)
    assert not store.exists(second.key)
    gone = client.post(
        f"/v1/models/{NAME}/explain?version=2",
        json={"inputs": rows[:1]},
        headers=bearer(keys["infer"]),
    )
    assert gone.status_code == 404, gone.text


def test_concurrent_backgrounds_leave_only_the_file_recorded_last(
    settings: Settings, app: FastAPI, client: TestClient, classifier_onnx: Path
) -> None:
    """Backgrounds recorded at once (the attacker's 24 concurrent PUTs left 13 files): each
    replaces what the one before it recorded, so one file is left, and it is the recorded
    one."""
    from concurrent.futures import ThreadPoolExecutor

    from app.api.explain import _record_background
    from app.api.state import gateway_of
    from app.explain.data import ExplainData
    from app.explain.register import record_metrics

    register(settings, classifier_onnx, name=NAME, labels=["a", "b", "c"])
    state = gateway_of(app)
    data = ExplainData(method="sampled_shapley", background={"input_0": [0.0, 1.0]})
    stored = [
        state.store.put_bytes(f"race/{index}/explain.json", data.to_bytes()) for index in range(8)
    ]

    def record(index: int) -> None:
        metrics = record_metrics(stored[index].key, stored[index].sha256, data, None)
        _record_background(state, NAME, 1, metrics)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(record, range(8)))
    _, recorded = _version(settings, 1)
    assert recorded is not None
    kept = [item.key for item in stored if state.store.exists(item.key)]
    assert kept == [recorded.key]

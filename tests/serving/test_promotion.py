"""Promotion gates through the real gateway app: by hand, on shadow agreement (enough rows,
a high enough lower bound), and on a labelled dataset (an exact sign test that must find
the candidate better); a gate that fails changes nothing and says why; the refusals."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.contracts.signature import VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.registry.service import VersionDraft, get_version, register_version
from app.serving.promotion import sign_test, wilson_lower
from app.storage import StoredArtifact
from tests.conftest import register
from tests.helpers import blobs_csv

ALIAS = "/v1/models/flowers/aliases/production"
LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-feature, 3-class network that never learnt anything (a poor candidate)."""
    from app.contracts.networks import MLPConfig
    from app.training.export import export_onnx
    from app.training.models import Network

    path = tmp_path_factory.mktemp("onnx") / "untrained.onnx"
    export_onnx(Network(MLPConfig(4, 3, (8,)), classification=True, seed=3), path)
    return path


@pytest.fixture
def versions(settings: Settings, classifier_onnx: Path, untrained_onnx: Path) -> None:
    register(settings, untrained_onnx, labels=LABELS)  # v1: poor
    register(settings, classifier_onnx, labels=LABELS)  # v2: good
    register(settings, classifier_onnx, labels=LABELS)  # v3: v2's twin


def promote(client: TestClient, admin: dict[str, str], **body: object) -> dict:
    response = client.post(f"{ALIAS}/promote", headers=admin, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_by_hand(client: TestClient, admin: dict[str, str], versions: None) -> None:
    split = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    client.put(ALIAS, headers=admin, json={"versions": split, "shadow": 3})
    answer = promote(client, admin, version=2, gate="manual")
    assert answer["promoted"] and answer["evidence"]["primary_version"] == 1
    assert answer["alias"] == {
        "model": "flowers",
        "alias": "production",
        "version": 2,
        "versions": None,
        "shadow": None,
    }
    [event] = client.get("/v1/models/flowers/events", headers=admin).json()
    assert event["kind"] == "promotion" and "version 2 takes all" in event["message"]


def shadowed(client: TestClient, app: FastAPI, admin: dict[str, str], requests: int) -> None:
    client.put(ALIAS, headers=admin, json={"version": 2, "shadow": 3})
    rows = np.random.default_rng(0).normal(3, 2, size=(requests, 4)).tolist()
    for row in rows:
        client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [row]})
    monitors = gateway_of(app).monitors
    assert monitors.wait_idle(30)
    monitors.flush()


def test_on_shadow_agreement(
    client: TestClient, app: FastAPI, admin: dict[str, str], versions: None
) -> None:
    shadowed(client, app, admin, 50)
    early = promote(client, admin, version=3, gate="agreement")
    assert not early["promoted"] and "fewer rows than 200" in early["reason"]
    assert client.get(ALIAS, headers=admin).json()["shadow"] == 3  # nothing changed
    shadowed(client, app, admin, 250)
    answer = promote(client, admin, version=3, gate="agreement")
    assert answer["promoted"], answer["reason"]
    assert answer["evidence"]["agreement"] == 1.0 and answer["evidence"]["lower_bound"] > 0.98
    assert client.get(ALIAS, headers=admin).json()["version"] == 3


def labelled_dataset(client: TestClient, admin: dict[str, str]) -> int:
    upload = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("labelled.csv", io.BytesIO(blobs_csv(300, labels=LABELS, seed=5)))},
    )
    assert upload.status_code == 201, upload.text
    return int(upload.json()["id"])


def test_on_labelled_rows_the_candidate_must_be_better(
    client: TestClient, admin: dict[str, str], versions: None
) -> None:
    dataset = labelled_dataset(client, admin)
    client.put(ALIAS, headers=admin, json={"version": 2})
    worse = promote(client, admin, version=1, gate="labelled", dataset_id=dataset)
    assert not worse["promoted"] and worse["evidence"]["p_value"] > 0.5
    assert worse["evidence"]["primary_accuracy"] > 0.9 > worse["evidence"]["candidate_accuracy"]
    assert "one-sided exact sign test" in worse["reason"]
    assert client.get(ALIAS, headers=admin).json()["version"] == 2
    client.put(ALIAS, headers=admin, json={"version": 1})
    better = promote(client, admin, version=2, gate="labelled", dataset_id=dataset)
    assert better["promoted"] and better["evidence"]["p_value"] < 1e-6
    assert better["evidence"]["rows"] == 300
    same = promote(client, admin, version=3, gate="labelled", dataset_id=dataset)
    assert not same["promoted"] and same["evidence"]["better"] == 0  # a twin is no better


def test_a_sandboxed_candidate_is_gated_in_its_sandbox(
    client: TestClient, app: FastAPI, admin: dict[str, str], settings: Settings, versions: None
) -> None:
    """An upload that is not bounded runs only in its sandbox: a labelled gate runs it there,
    with the same verdict as its in-process twin (v2), and the gateway holds no session."""
    sandboxed = VersionConfig(graph_class="sandboxed", graph_class_reason="a test graph")
    with session_scope(settings.database_url) as session:
        twin = get_version(session, "flowers", 2)
        draft = VersionDraft(
            task="classification",
            source="upload",
            artifact=StoredArtifact(twin.artifact_key, twin.sha256, twin.size_bytes),
            class_labels=LABELS,
            signature=twin.signature,
            config=sandboxed,
        )
        assert register_version(session, "flowers", draft).version == 4
    dataset = labelled_dataset(client, admin)
    client.put(ALIAS, headers=admin, json={"version": 1})
    better = promote(client, admin, version=4, gate="labelled", dataset_id=dataset)
    assert better["promoted"] and better["evidence"]["rows"] == 300
    loaded = {model.version_id: model for model in gateway_of(app).sessions.loaded()}
    assert any(model.sandboxed and model.session is None for model in loaded.values())
    assert gateway_of(app).sandboxes.stats()["runs"] > 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"version": 2, "gate": "labelled"}, 422, "the labelled gate needs a labelled dataset"),
        ({"version": 3, "gate": "agreement"}, 422, "no shadow comparison of version 3"),
        ({"version": 9, "gate": "manual"}, 404, "has no version 9"),
        ({"version": 1, "gate": "manual"}, 422, "already takes all of 'production'"),
        ({"version": 2, "gate": "coin"}, 422, "gate"),
        ({"version": 2, "gate": "labelled", "dataset_id": 99999}, 404, "99999"),
    ],
)
def test_refusals(
    client: TestClient,
    admin: dict[str, str],
    versions: None,
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    client.put(ALIAS, headers=admin, json={"version": 1})
    response = client.post(f"{ALIAS}/promote", headers=admin, json=body)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])
    assert client.get(ALIAS, headers=admin).json()["version"] == 1


def test_without_the_alias_there_is_nothing_to_promote_within(
    client: TestClient, admin: dict[str, str], versions: None
) -> None:
    assert client.delete(ALIAS, headers=admin).status_code == 204  # the first version's
    response = client.post(f"{ALIAS}/promote", headers=admin, json={"version": 2, "gate": "manual"})
    assert response.status_code == 422 and "has no alias 'production'" in response.text


def test_the_statistics() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(0.5**10)
    assert sign_test(5, 5) > 0.5
    assert wilson_lower(250, 250, 0.05) == pytest.approx(0.9893, abs=1e-3)
    assert wilson_lower(0, 0, 0.05) == 0.0
    assert wilson_lower(90, 100, 0.05) < 0.9


def test_a_gate_runs_a_capped_upload_in_chunks_it_may_take() -> None:
    """A bounded upload takes at most its cap of rows per run, in a gate as on a request."""
    from app.serving.promotion import _outputs

    class Capped:
        columns = None
        calls: list[int] = []

        def max_rows(self, gateway_limit: int) -> int:
            return min(gateway_limit, 7)

        def feeds_of(self, rows: np.ndarray) -> dict[str, np.ndarray]:
            return {"input": rows}

        def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
            self.calls.append(len(feeds["input"]))
            return feeds["input"][:, :1]

    model = Capped()
    out = _outputs(model, None, np.zeros((30, 4), dtype=np.float32))  # type: ignore[arg-type]
    assert out.shape == (30, 1) and max(model.calls) == 7 and sum(model.calls) == 30

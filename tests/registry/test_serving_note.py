"""What a job's result says of serving: a first version took ``production``; a later one
is set beside the version that serves, on the registry's stored held-out metrics, said to
share its rows only when both were cut from one dataset with one seed, with a promote
command that works as written."""

from __future__ import annotations

import io
import json
import shlex

from fastapi.testclient import TestClient

from app.contracts.results import ServingNote
from app.contracts.signature import Signature, VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.registry.service import VersionDraft, register_version
from app.registry.serving_note import serving_note
from app.storage import StoredArtifact
from tests.helpers import blobs_csv

SIGNATURE = Signature.of_tensors(input_name="input", row_shape=(4,), output_name="output", width=2)
ARTIFACT = StoredArtifact(key="test/m.onnx", sha256="0" * 64, size_bytes=1)


def dataset(client: TestClient, admin: dict[str, str], seed: int) -> int:
    upload = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("blobs.csv", io.BytesIO(blobs_csv(60, seed=seed)))},
    )
    assert upload.status_code == 201, upload.text
    return int(upload.json()["id"])


def add(
    settings: Settings,
    *,
    accuracy: float | None,
    dataset_id: int | None = None,
    seed: int | None = 0,
    source: str = "search",
) -> int:
    metrics = {} if accuracy is None else {"accuracy": accuracy, "test_rows": 60}
    with session_scope(settings.database_url) as session:
        draft = VersionDraft(
            task="classification",
            source=source,
            artifact=ARTIFACT,
            signature=SIGNATURE,
            metrics=metrics,
            class_labels=["a", "b"],
            config=VersionConfig(split_seed=seed),
            dataset_id=dataset_id,
        )
        return register_version(session, "digits", draft).version


def note(settings: Settings, candidate: int | None) -> ServingNote:
    with session_scope(settings.database_url) as session:
        found = serving_note(session, "digits", candidate)
    assert found is not None
    return found


def test_a_first_version_took_production(settings: Settings) -> None:
    add(settings, accuracy=0.973)
    first = note(settings, 1)
    assert first.took_alias and first.serving_version == 1 and first.version == 1
    assert "v1 took 'production'" in first.summary and first.promote_cli is None


def test_a_later_version_is_set_beside_what_serves_and_promoted_as_the_note_says(
    settings: Settings, client: TestClient, admin: dict[str, str]
) -> None:
    rows = dataset(client, admin, seed=0)
    add(settings, accuracy=0.973, dataset_id=rows)
    add(settings, accuracy=0.96, dataset_id=rows)
    later = note(settings, 2)
    assert not later.took_alias and (later.serving_version, later.version) == (1, 2)
    assert (later.metric, later.value, later.serving_value) == ("accuracy", 0.96, 0.973)
    assert later.same_rows and later.test_rows == later.serving_test_rows == 60
    assert later.summary == (
        "'production' serves v1 (accuracy 0.973 on its 60 held-out rows); v2 has accuracy "
        "0.96 on the same rows. It does not serve until promoted: "
        "kiln promote digits 2 --gate manual"
    )
    assert client.get("/v1/models/digits", headers=admin).json()["serving_version"] == 1
    words = shlex.split(str(later.promote_curl))
    url, body = words[words.index("-X") + 2], json.loads(words[words.index("-d") + 1])
    prefix = "${KILN_URL:-http://127.0.0.1:8000}"
    assert url.startswith(prefix) and body == {"version": 2, "gate": "manual"}
    promoted = client.post(url.removeprefix(prefix), headers=admin, json=body)
    assert promoted.status_code == 200 and promoted.json()["promoted"], promoted.text
    assert client.get("/v1/models/digits", headers=admin).json()["serving_version"] == 2


def test_versions_of_other_rows_are_not_said_to_share_them(
    settings: Settings, client: TestClient, admin: dict[str, str]
) -> None:
    first, second = dataset(client, admin, seed=0), dataset(client, admin, seed=1)
    add(settings, accuracy=0.973, dataset_id=first)
    add(settings, accuracy=0.96, dataset_id=second)  # another dataset
    add(settings, accuracy=0.95, dataset_id=first, seed=7)  # the same one, another split
    for candidate in (2, 3):
        other = note(settings, candidate)
        assert not other.same_rows
        assert "on its own 60 held-out rows (another dataset or split than v1's" in other.summary


def test_an_upload_serving_has_no_metric_to_set_beside(settings: Settings) -> None:
    add(settings, accuracy=None, seed=None, source="upload")
    add(settings, accuracy=0.9)
    beside = note(settings, 2)
    assert beside.serving_value is None and beside.value == 0.9 and not beside.same_rows
    assert "'production' serves v1 (no held-out accuracy stored)" in beside.summary


def test_a_compression_that_recommends_no_variant_says_only_what_serves(
    settings: Settings,
) -> None:
    add(settings, accuracy=0.973)
    only = note(settings, None)
    assert only.version is None and not only.took_alias and only.promote_cli is None
    assert only.summary == "'production' serves v1 (accuracy 0.973 on its 60 held-out rows)."

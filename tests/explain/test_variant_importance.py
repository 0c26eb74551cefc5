"""A compression variant is explained against its parent's background and registers with its
own global importance, computed on its own graph: through a real search job with a
compression chain (``run_job`` with the search's handler, in this process), and the rule
``inherited`` keeps an importance only when it was computed on the parent's file as it is."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.db import session_scope
from app.explain.data import ExplainRecord, Importance, inherited
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.registry.service import get_version
from tests.conftest import bearer
from tests.search.test_forest_search import table_csv

COLUMNS = {"x", "size", "colour", "day"}


def test_a_searchs_variant_has_its_own_importance(
    client: TestClient, admin: dict[str, str], keys: dict[str, str], settings: Settings
) -> None:
    answer = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("rows.csv", table_csv(), "text/csv")},
    )
    assert answer.status_code == 201, answer.text
    body = {
        "kind": "search",
        "dataset_id": answer.json()["id"],
        "model_name": "squeezed",
        "search": {"families": ["mlp"], "max_trials": 1, "max_epochs": 2, "seed": 1},
        "compression": {"methods": ["quantize_dynamic"]},
    }
    queued = client.post("/v1/jobs", headers=admin, json=body)
    assert queued.status_code == 202, queued.text
    job_id = int(queued.json()["id"])
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    job = client.get(f"/v1/jobs/{job_id}", headers=admin).json()
    assert job["status"] == "succeeded", job["error"]
    versions = client.get("/v1/models/squeezed/versions", headers=admin).json()["items"]
    parent = next(v for v in versions if v["source"] == "search")
    variant = next(v for v in versions if v["source"] == "compression")
    own = ExplainRecord.of(variant["metrics"])
    of_parent = ExplainRecord.of(parent["metrics"])
    assert own is not None and of_parent is not None
    assert (own.key, own.method) == (of_parent.key, "sampled_shapley")
    with session_scope(settings.database_url) as session:
        assert own.inherited_from == get_version(session, "squeezed", parent["version"]).id
    assert own.importance is not None and set(own.importance.columns) == COLUMNS
    assert own.importance.rows > 0 and max(own.importance.columns.values()) > 0
    shown = client.get(f"/v1/models/squeezed/versions/{variant['version']}", headers=admin)
    assert shown.json()["importance"]["columns"] == own.importance.columns

    rows = [{"x": 0.4, "size": None, "colour": "red", "day": "2024-03-05"}]
    explained = client.post(
        f"/v1/models/squeezed/explain?version={variant['version']}",
        json={"inputs": rows},
        headers=bearer(keys["infer"]),
    )
    assert explained.status_code == 200, explained.text
    for output in explained.json()["explanations"][0]["outputs"]:
        total = output["base_value"] + math.fsum(output["attributions"].values())
        assert abs(total - output["value"]) <= 1e-4


def test_an_importance_is_kept_only_for_the_parents_file_as_it_is() -> None:
    parent = ExplainRecord(key="p", sha256="a", method="tree_shap", background_rows=32)
    importance = Importance(method="sampled_shapley", output="value", rows=4, columns={"x": 1.0})
    computed = ExplainRecord(
        key="p", sha256="a", method="sampled_shapley", background_rows=32, importance=importance
    )
    parent_metrics = {"explain": parent.model_dump(exclude_none=True)}
    metrics = {"explain": computed.model_dump(exclude_none=True)}
    kept = ExplainRecord.of(inherited(metrics, parent_metrics, 7))
    assert kept is not None and kept.importance == importance and kept.inherited_from == 7
    changed = {"explain": parent.model_copy(update={"sha256": "b"}).model_dump()}
    dropped = ExplainRecord.of(inherited(metrics, changed, 7))
    assert dropped is not None and dropped.importance is None and dropped.sha256 == "b"
    assert inherited({"accuracy": 1.0}, None, 7) == {"accuracy": 1.0}

"""POST /v1/models/{name}/explain (and KServe's :explain) on a version of every family and
on an upload: the attributions and the base value add up to the value the answer names,
one attribution per column as the user named it, per class for a classifier; the global
importance on GET version; the refusals, each naming the problem."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import bearer, register
from tests.explain.tables import CUT, LABELS, Table, make_table, register_family

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def table() -> Table:
    return make_table()


def explained(
    client: TestClient, keys: dict[str, str], name: str, inputs: list[Any], path: str = "/explain"
) -> dict[str, Any]:
    url = f"/v1/models/{name}{path}"
    response = client.post(url, json={"inputs": inputs}, headers=bearer(keys["infer"]))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_additive(body: dict[str, Any]) -> None:
    for row in body["explanations"]:
        for output in row["outputs"]:
            total = output["base_value"] + math.fsum(output["attributions"].values())
            assert abs(total - output["value"]) <= TOLERANCE, (total, output["value"])


def predicted(client: TestClient, keys: dict[str, str], name: str, inputs: list[Any]) -> Any:
    response = client.post(
        f"/v1/models/{name}/predict", json={"inputs": inputs}, headers=bearer(keys["infer"])
    )
    assert response.status_code == 200, response.text
    return response.json()


EXPECTED = {
    "gbdt": ("tree_shap", "raw_score"),
    "linear": ("linear_exact", "raw_score"),
    "forest": ("sampled_shapley", "probability"),
    "mlp": ("sampled_shapley", "probability"),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_every_family_adds_up_per_class_by_column_name(
    family: str, table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    register_family(settings, table, family, "classification", family)
    rows = table.records(slice(CUT, CUT + 5))
    body = explained(client, keys, family, rows)
    assert (body["method"], body["output"]) == EXPECTED[family]
    assert body["model"] == family and body["version"] == 1
    assert len(body["explanations"]) == 5
    assert_additive(body)
    served = predicted(client, keys, family, rows)
    columns = {"island", "length", "count", "many", "when"}  # categorical and date: one each
    for index, row in enumerate(body["explanations"]):
        assert row["prediction"] == served["predictions"][index]
        assert [output["class"] for output in row["outputs"]] == LABELS
        for output in row["outputs"]:
            assert set(output["attributions"]) == columns
        if body["output"] == "probability":  # the value is the served probability
            values = [output["value"] for output in row["outputs"]]
            assert np.allclose(values, served["probabilities"][index], atol=1e-5)
        else:  # raw scores: the softmax of the classes' scores is the served probability
            scores = np.array([output["value"] for output in row["outputs"]])
            probabilities = np.exp(scores - scores.max())
            probabilities /= probabilities.sum()
            assert np.allclose(probabilities, served["probabilities"][index], atol=1e-4)
    kserve = explained(client, keys, family, rows, path=":explain")
    assert kserve["explanations"] == body["explanations"]


@pytest.mark.parametrize("family", ["gbdt", "linear", "mlp"])
def test_regression_adds_up_to_the_value(
    family: str, table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    register_family(settings, table, family, "regression", f"{family}-values")
    rows = table.records(slice(CUT, CUT + 3))
    body = explained(client, keys, f"{family}-values", rows)
    assert_additive(body)
    served = predicted(client, keys, f"{family}-values", rows)["predictions"]
    for row, value in zip(body["explanations"], served, strict=True):
        assert row["outputs"][0]["class"] is None
        assert abs(row["outputs"][0]["value"] - value) <= 1e-4


def test_the_version_shows_its_global_importance(
    table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    register_family(settings, table, "gbdt", "classification", "trees")
    response = client.get("/v1/models/trees/versions/1", headers=bearer(keys["read"]))
    assert response.status_code == 200, response.text
    importance = response.json()["importance"]
    assert importance["method"] == "tree_shap" and importance["output"] == "raw_score"
    assert importance["rows"] == 64
    values = list(importance["columns"].values())
    assert set(importance["columns"]) == {"island", "length", "count", "many", "when"}
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert next(iter(importance["columns"])) in {"island", "length"}  # what the target is of


def test_a_two_class_booster_gives_log_odds_of_each_class(
    table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    binary = Table(
        table.encoding,
        table.raw,
        table.features,
        (table.classes > 0).astype(np.int64),
        table.values,
    )
    register_family(settings, binary, "gbdt", "classification", "yes-no", ["no", "yes"])
    body = explained(client, keys, "yes-no", binary.records(slice(CUT, CUT + 2)))
    assert_additive(body)
    for row in body["explanations"]:
        no, yes = row["outputs"]
        assert no["value"] == pytest.approx(-yes["value"])
        assert no["attributions"]["length"] == pytest.approx(-yes["attributions"]["length"])


def test_an_upload_is_explained_against_the_background_its_owner_sent(
    settings: Settings, client: TestClient, keys: dict[str, str], classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    rows = np.random.default_rng(0).normal(size=(12, 4)).round(3).tolist()
    refused = client.post(
        "/v1/models/flowers/explain", json={"inputs": rows[:1]}, headers=bearer(keys["infer"])
    )
    assert refused.status_code == 409
    assert "no background sample" in refused.json()["detail"]
    assert "explain/background" in refused.json()["detail"]
    put = client.put(
        "/v1/models/flowers/versions/1/explain/background",
        json={"inputs": rows},
        headers=bearer(keys["write"]),
    )
    assert put.status_code == 200, put.text
    assert put.json()["background_rows"] == 12
    assert set(put.json()["importance"]["columns"]) == {"input_0", "input_1", "input_2", "input_3"}
    body = explained(client, keys, "flowers", rows[:3])
    assert (body["method"], body["output"], body["samples"]) == ("sampled_shapley", "score", 12)
    assert_additive(body)
    served = predicted(client, keys, "flowers", rows[:3])
    for index, row in enumerate(body["explanations"]):
        values = [output["value"] for output in row["outputs"]]
        assert np.allclose(values, served["probabilities"][index], atol=1e-5)
        assert row["prediction"] == served["predictions"][index]
    shown = client.get("/v1/models/flowers/versions/1", headers=bearer(keys["read"])).json()
    assert shown["importance"]["rows"] == 12


def test_refusals_name_the_problem(
    table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    register_family(settings, table, "mlp", "classification", "net")
    infer = bearer(keys["infer"])
    url = "/v1/models/net/explain"
    cases: list[tuple[Any, int, str]] = [
        ({"inputs": []}, 422, "non-empty list"),
        ({"inputs": [{"island": "Dream", "nope": 1}]}, 422, "unknown column 'nope'"),
        ({"inputs": [{"length": "long"}]}, 422, "inputs[0]['length']"),
        ({"inputs": [{}], "extra": 1}, 422, "unknown fields"),
        ({"rows": []}, 422, '"inputs"'),
        ({"inputs": [{}] * 101}, 413, "KILN_EXPLAIN_MAX_ROWS"),
    ]
    for body, status, words in cases:
        response = client.post(url, json=body, headers=infer)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], response.text
    broken = client.post(url, content=b"{", headers={**infer, "Content-Type": "application/json"})
    assert broken.status_code == 400
    missing = client.post("/v1/models/nothing/explain", json={"inputs": [{}]}, headers=infer)
    assert missing.status_code == 404
    write_only = client.post(url, json={"inputs": [{}]}, headers=bearer(keys["read"]))
    assert write_only.status_code == 403
    exact = client.put(
        "/v1/models/net/versions/1/explain/background",
        json={"inputs": [{}]},
        headers=bearer(keys["write"]),
    )
    assert exact.status_code == 422 and "at least 2" in exact.json()["detail"]


def test_perturbed_rows_are_bounded_by_the_setting(
    table: Table, tmp_path: Path, database_url: str, keys: dict[str, str]
) -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data", database_url, explain_max_perturbed_rows=100)
    register_family(settings, table, "mlp", "classification", "wide")
    with TestClient(create_app(settings, run_reaper=False)) as client:
        response = client.post(
            "/v1/models/wide/explain",
            json={"inputs": table.records(slice(CUT, CUT + 1))},
            headers=bearer(keys["infer"]),
        )
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "KILN_EXPLAIN_MAX_PERTURBED_ROWS" in detail and "129 per row" in detail


def test_the_kserve_verb_refuses_a_name_with_a_colon(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = client.post(
        "/v1/models/a:b:explain", json={"inputs": [{}]}, headers=bearer(keys["infer"])
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["path", "name"] and "model name 'a:b' is not valid" in error["msg"]


def test_a_searched_version_keeps_the_background_its_job_sampled(
    table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    """Sending rows for a searched network's background is a 409: its importance (from
    held-out rows) and its explanations stay what its job stored."""
    register_family(settings, table, "mlp", "classification", "kept-net")
    before = client.get("/v1/models/kept-net/versions/1", headers=bearer(keys["read"])).json()
    refused = client.put(
        "/v1/models/kept-net/versions/1/explain/background",
        json={"inputs": table.records(slice(0, 2))},
        headers=bearer(keys["write"]),
    )
    assert refused.status_code == 409, refused.text
    assert "only for an uploaded model" in refused.json()["detail"]
    after = client.get("/v1/models/kept-net/versions/1", headers=bearer(keys["read"])).json()
    assert after["importance"] == before["importance"] and after["importance"]["rows"] == 64


def test_values_run_through_the_model_are_bounded_before_anything_is_built(
    table: Table, tmp_path: Path, database_url: str, keys: dict[str, str]
) -> None:
    """Rows x columns of the perturbed batch count against KILN_MAX_TENSOR_ELEMENTS: a 413
    naming it, before the batch is made."""
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data", database_url, max_tensor_elements=500)
    register_family(settings, table, "mlp", "classification", "valued")
    with TestClient(create_app(settings, run_reaper=False)) as client:
        response = client.post(
            "/v1/models/valued/explain",
            json={"inputs": table.records(slice(CUT, CUT + 1))},
            headers=bearer(keys["infer"]),
        )
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "KILN_MAX_TENSOR_ELEMENTS" in detail and "645 values" in detail


def test_an_upload_run_a_few_rows_at_a_time_is_explained_in_a_bounded_number_of_runs(
    tmp_path: Path, database_url: str, keys: dict[str, str], classifier_onnx: Path
) -> None:
    """An upload whose probe measured 4 MB a row runs 4 rows at a time: an explanation that
    would take more than MAX_RUNS runs is a 413 naming why, before any run (so a request's
    time is bounded by its runs' own deadlines)."""
    from app.api.explain import MAX_RUNS
    from app.contracts.signature import VersionConfig
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data", database_url, upload_request_memory_mb=16)
    capped = VersionConfig(
        graph_class="bounded", graph_class_reason="static", bytes_per_row=4 * 1024 * 1024
    )
    register(settings, classifier_onnx, name="slow", labels=["a", "b", "c"], config=capped)
    rows = np.random.default_rng(1).normal(size=(4, 4)).round(3).tolist()
    with TestClient(create_app(settings, run_reaper=False)) as client:
        put = client.put(
            "/v1/models/slow/versions/1/explain/background",
            json={"inputs": rows},
            headers=bearer(keys["write"]),
        )
        assert put.status_code == 200, put.text
        body = explained(client, keys, "slow", rows[:1])  # 1 + 4 x 3 = 13 rows: 4 runs
        assert_additive(body)
        refused = client.post(
            "/v1/models/slow/explain", json={"inputs": rows[:3]}, headers=bearer(keys["infer"])
        )
    assert refused.status_code == 413, refused.text
    detail = refused.json()["detail"]
    assert f"10 runs, at most {MAX_RUNS} per request" in detail
    assert "KILN_UPLOAD_REQUEST_MEMORY_MB" in detail

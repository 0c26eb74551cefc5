"""The model page's explanations, through the app against the real registry: a searched
version's global importance drawn as bars (its columns, largest first, the method and the
output named); an upload without a background says why and how to add one, then shows the
importance computed on the rows sent; the try-a-prediction form's Explain route answers
what ``POST /v1/models/{name}/explain`` answers, its refusals included."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import bearer, register
from tests.explain.tables import CUT, Table, make_table, register_family
from tests.helpers import ui_sign_in

SAME_SITE = {"Origin": "http://testserver"}
COLUMNS = {"island", "length", "count", "many", "when"}


@pytest.fixture(scope="module")
def table() -> Table:
    return make_table()


def importance_figure(page: str) -> dict[str, Any] | None:
    """The importance chart's figure embedded in a model page, or None."""
    for found in re.findall(
        r'<script type="application/json" class="figures">(.*?)</script>', page, re.S
    ):
        figures = json.loads(found)
        if "importance" in figures:
            return dict(figures["importance"])
    return None


def tried(client: TestClient, name: str, body: str, version: int = 1) -> Any:
    return client.post(
        f"/ui/models/{name}/explain",
        headers=SAME_SITE,
        data={"version": str(version), "body": body},
    )


def test_a_searched_versions_importance_is_drawn_and_explain_answers_as_the_api(
    table: Table, settings: Settings, client: TestClient, keys: dict[str, str]
) -> None:
    metrics = register_family(settings, table, "gbdt", "classification", "trees")
    stored = metrics["explain"]["importance"]["columns"]
    ui_sign_in(client, keys["write"])
    page = unescape(client.get("/ui/models/trees?version=1").text)
    assert '<script src="/ui/static/plotly.min.js">' in page
    figure = importance_figure(page)
    assert figure is not None
    bars = figure["data"][0]
    assert bars["orientation"] == "h" and set(bars["y"]) == COLUMNS
    assert bars["x"] == sorted(bars["x"])  # drawn from the bottom: the largest on top
    assert figure["layout"]["yaxis"]["type"] == "category"  # in that order, whatever the names
    assert dict(zip(bars["y"], bars["x"], strict=True)) == pytest.approx(stored)
    ranked = sorted(stored, key=lambda column: stored[column], reverse=True)
    assert f'data-columns="{",".join(ranked)}"' in page
    note = re.search(r'<p class="note" id="importance-note">(.*?)</p>', page, re.S)
    assert note is not None
    assert '<span id="importance-rows">64</span> rows held out from its training' in note[1]
    assert '<code id="importance-method">tree_shap</code>, TreeSHAP' in note[1]
    assert '<code id="importance-output">raw_score</code>, the raw score' in note[1]
    assert 'id="explain-button" formaction="/ui/models/trees/explain"' in page

    rows = table.records(slice(CUT, CUT + 2))
    body = json.dumps({"inputs": rows})
    answer = tried(client, "trees", body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    api = client.post("/v1/models/trees/explain", content=body, headers=bearer(keys["infer"]))
    assert answer.json() == api.json()
    assert answer.json()["method"] == "tree_shap" and len(answer.json()["explanations"]) == 2

    bad_bodies = [
        json.dumps({"inputs": [{"island": "Dream", "nope": 1}]}),
        json.dumps({"inputs": [{"length": "long"}]}),
        json.dumps({"rows": []}),
        json.dumps({"inputs": [{}] * 101}),
        "{",
    ]
    for bad in bad_bodies:
        refused = tried(client, "trees", bad)
        api = client.post("/v1/models/trees/explain", content=bad, headers=bearer(keys["infer"]))
        assert 400 <= api.status_code < 500, api.text
        assert (refused.status_code, refused.json()) == (api.status_code, api.json()), bad
    missing = tried(client, "trees", body, version=9)
    assert missing.status_code == 404 and "9" in missing.json()["detail"]
    no_version = client.post("/ui/models/trees/explain", headers=SAME_SITE, data={"body": body})
    assert no_version.status_code == 422 and "version" in no_version.text
    elsewhere = client.post(
        "/ui/models/trees/explain",
        headers={"Origin": "https://evil.example"},
        data={"version": "1", "body": body},
    )
    assert elsewhere.status_code == 403

    client.cookies.clear()
    ui_sign_in(client, keys["read"])
    page = client.get("/ui/models/trees").text
    assert importance_figure(page) is not None  # a reader sees the importance
    assert 'id="explain-button"' not in page
    refused = tried(client, "trees", body)
    assert refused.status_code == 403 and "needs 'infer'" in unescape(refused.text)


def test_an_upload_says_how_to_add_a_background_then_shows_what_it_measured(
    settings: Settings, client: TestClient, keys: dict[str, str], classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    ui_sign_in(client, keys["write"])
    page = unescape(client.get("/ui/models/flowers").text)
    assert importance_figure(page) is None
    missing = re.search(r'<p class="note" id="importance-missing">(.*?)</p>', page, re.S)
    assert missing is not None and "uploaded graph comes with no rows" in missing[1]
    assert "PUT /v1/models/flowers/versions/1/explain/background" in missing[1]

    body = json.dumps({"inputs": [[6, 6, 6, 6]]})
    refused = tried(client, "flowers", body)
    api = client.post("/v1/models/flowers/explain", content=body, headers=bearer(keys["infer"]))
    assert refused.status_code == 409 and refused.json() == api.json()
    assert "explain/background" in refused.json()["detail"]

    rows = np.random.default_rng(0).normal(size=(12, 4)).round(3).tolist()
    put = client.put(
        "/v1/models/flowers/versions/1/explain/background",
        json={"inputs": rows},
        headers=bearer(keys["write"]),
    )
    assert put.status_code == 200, put.text
    page = unescape(client.get("/ui/models/flowers").text)
    figure = importance_figure(page)
    assert figure is not None
    assert set(figure["data"][0]["y"]) == {"input_0", "input_1", "input_2", "input_3"}
    assert "12</span> rows of the background sample sent for it" in page
    assert "sampled_shapley</code>, sampled Shapley values" in page
    assert "against 12 background rows" in page
    answer = tried(client, "flowers", body)
    assert answer.status_code == 200, answer.text
    explained = answer.json()["explanations"][0]
    assert [output["class"] for output in explained["outputs"]] == ["a", "b", "c"]
    assert explained["prediction"] == "c"
    wrong = tried(client, "flowers", json.dumps({"inputs": [[6, 6]]}))
    api = client.post(
        "/v1/models/flowers/explain",
        json={"inputs": [[6, 6]]},
        headers=bearer(keys["infer"]),
    )
    assert wrong.status_code == 422 and wrong.json() == api.json()

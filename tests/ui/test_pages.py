"""The dashboard against the real database, through the app: signing in (a session
cookie scripts cannot read, never a URL; tests/ui/test_sessions.py says what it holds),
what each scope is offered, forms refused from other sites, and the pages' content (charts
with the right number of points, the version tree, aliases with history, the dataset
profile, the serving counters)."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.contracts.enums import JobStatus
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.tables import Job, Trial
from tests.conftest import register
from tests.helpers import blobs_csv, ui_sign_in

PAGES = ["/ui/jobs", "/ui/models", "/ui/datasets", "/ui/serving"]


def sign_in(client: TestClient, key: str) -> None:
    ui_sign_in(client, key)


def seed_search(settings: Settings) -> int:
    """A finished search job with five trials: four complete, one pruned."""
    with session_scope(settings.database_url) as session:
        job = Job(
            kind="search",
            status=JobStatus.SUCCEEDED,
            model_name="seeded",
            spec={"search": {"max_trials": 5}},
            attempt=1,
            max_attempts=3,
            progress_done=5,
            progress_total=5,
            best_value=0.9,
            started_at=utcnow(),
            finished_at=utcnow(),
            result={
                "plan": {"objectives": [{"metric": "accuracy", "direction": "maximize"}]},
                "versions": [1],
                "version": 1,
                "model_name": "seeded",
                "trial": 4,
                "metrics": {"accuracy": 0.9},
            },
        )
        session.add(job)
        session.flush()
        for number, (state, value, width) in enumerate(
            [
                ("complete", 0.70, 16),
                ("complete", 0.85, 32),
                ("pruned", None, 8),
                ("complete", 0.80, 64),
                ("complete", 0.90, 32),
            ]
        ):
            session.add(
                Trial(
                    job_id=job.id,
                    number=number,
                    attempt=1,
                    state=state,
                    params={"width": width, "activation": "relu" if number % 2 else "tanh"},
                    value=value,
                    values=None if value is None else [value],
                    intermediate=[0.5, 0.6] if state == "pruned" else [0.5, 0.6, value],
                )
            )
        return int(job.id)


def figures_of(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="figures">(.*?)</script>', html, re.S)
    assert found, "no figures on the page"
    return dict(json.loads(found[1]))


def test_pages_need_a_signed_in_key_and_send_the_browser_to_sign_in(client: TestClient) -> None:
    for page in PAGES:
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert client.get("/ui/login").status_code == 200


def test_sign_in_keeps_the_key_in_a_session_cookie_only(
    client: TestClient, keys: dict[str, str]
) -> None:
    answer = client.post("/ui/login", data={"key": keys["read"]}, follow_redirects=False)
    assert answer.status_code == 303 and keys["read"] not in answer.headers["location"]
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # this session only
    wrong = client.post("/ui/login", data={"key": "kiln_not-a-key"})
    assert wrong.status_code == 401 and "invalid or revoked" in wrong.text
    infer_only = client.post("/ui/login", data={"key": keys["infer"]})
    assert infer_only.status_code == 401 and "needs 'read'" in unescape(infer_only.text)


def test_a_revoked_key_is_signed_out_at_once(
    client: TestClient, keys: dict[str, str], admin: dict
) -> None:
    created = client.post("/v1/keys", headers=admin, json={"name": "brief", "scope": "read"})
    secret, key_id = created.json()["key"], created.json()["id"]
    sign_in(client, secret)
    assert client.get("/ui/jobs").status_code == 200
    client.delete(f"/v1/keys/{key_id}", headers=admin)
    answer = client.get("/ui/jobs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_what_a_page_offers_follows_the_scope(
    client: TestClient, keys: dict[str, str], settings: Settings, classifier_onnx
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    sign_in(client, keys["read"])
    page = client.get("/ui/models/flowers").text
    assert 'id="move-alias"' not in page and "ONNX</a>" in page
    refused = client.post(
        "/ui/models/flowers/aliases", data={"alias": "production", "version": "1"}
    )
    assert refused.status_code == 403 and "needs 'write'" in unescape(refused.text)
    sign_in(client, keys["write"])
    assert 'id="move-alias"' in client.get("/ui/models/flowers").text


def test_moving_an_alias_from_the_page_is_what_the_api_sees(
    client: TestClient, keys: dict[str, str], admin: dict, settings: Settings, classifier_onnx
) -> None:
    for _ in range(2):
        register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    sign_in(client, keys["write"])
    moved = client.post(
        "/ui/models/flowers/aliases",
        data={"alias": "production", "version": "2"},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert client.get("/v1/models/flowers", headers=admin).json()["aliases"] == {"production": 2}
    page = client.get("/ui/models/flowers").text
    assert 'data-alias="production"' in page and "v2 from" in page
    artifact = client.get("/ui/models/flowers/versions/2/artifact")
    assert artifact.status_code == 200 and artifact.content == classifier_onnx.read_bytes()


def test_forms_from_another_site_are_refused(
    client: TestClient, keys: dict[str, str], admin: dict, settings: Settings, classifier_onnx
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    sign_in(client, keys["write"])
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = client.post(
            "/ui/models/flowers/aliases",
            headers=headers,
            data={"alias": "production", "version": "1"},
        )
        assert answer.status_code == 403, answer.text
    aliases = client.get("/v1/models/flowers", headers=admin).json()["aliases"]
    assert aliases == {"production": 1}  # as registering v1 set it


def test_the_search_page_draws_every_trial(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    job_id = seed_search(settings)
    sign_in(client, keys["read"])
    html = client.get(f"/ui/jobs/{job_id}").text
    figures = figures_of(html)
    history = figures["history"]["data"]
    assert [len(t["x"]) for t in history] == [4, 4, 1]  # trials, best so far, pruned
    assert history[1]["y"] == [0.70, 0.85, 0.85, 0.90]  # best so far, maximising
    assert len(figures["curves"]["data"]) == 5
    assert "importance" not in figures  # four complete trials: noise, said so instead
    assert "Not shown: 4 complete trials; importances need at least 8" in html
    parallel = figures["parallel"]["data"][0]["dimensions"]
    assert [d["label"] for d in parallel] == ["activation", "width", "accuracy"]
    assert 'data-live-end="1"' in html and 'id="cancel"' not in html
    assert html.count('data-state="') == 5


def seed_wide_search(settings: Settings, trials: int, parameters: int) -> int:
    """A finished search whose trials vary ``parameters`` parameters; ``p0`` alone moves
    the objective."""
    with session_scope(settings.database_url) as session:
        job = Job(
            kind="search",
            status=JobStatus.SUCCEEDED,
            model_name="wide",
            spec={"search": {"max_trials": trials}},
            attempt=1,
            max_attempts=3,
            progress_done=trials,
            progress_total=trials,
            best_value=0.9,
            started_at=utcnow(),
            finished_at=utcnow(),
            result={
                "plan": {"objectives": [{"metric": "accuracy", "direction": "maximize"}]},
                "versions": [1],
                "version": 1,
                "model_name": "wide",
                "trial": 0,
                "metrics": {"accuracy": 0.9},
            },
        )
        session.add(job)
        session.flush()
        rng = np.random.default_rng(0)
        for number in range(trials):
            params = {f"p{k}": int(rng.integers(0, 100)) for k in range(parameters)}
            params["p0"] = number
            params["long_parameter_name_weight_decay"] = number % 3
            value = 0.5 + 0.03 * number
            session.add(
                Trial(
                    job_id=job.id,
                    number=number,
                    attempt=1,
                    state="complete",
                    params=params,
                    value=value,
                    values=[value],
                    intermediate=[value],
                )
            )
        return int(job.id)


def test_importances_and_parallel_axes_of_a_wide_search(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    job_id = seed_wide_search(settings, trials=12, parameters=15)
    sign_in(client, keys["read"])
    html = client.get(f"/ui/jobs/{job_id}").text
    figures = figures_of(html)
    bars = figures["importance"]
    assert max(bars["data"][0]["x"]) == bars["data"][0]["x"][-1]  # sorted, the largest last
    assert bars["data"][0]["y"][-1] == "p0"
    longest = len("long_parameter_name_weight_decay")
    assert bars["layout"]["margin"]["l"] >= 7 * longest  # labels are not cut off
    axes = [d["label"] for d in figures["parallel"]["data"][0]["dimensions"]]
    assert len(axes) == 8 + 1 and axes[0] == "p0" and axes[-1] == "accuracy"
    assert "The 8 parameters that explain the most, of 16 that varied." in html


def test_a_running_job_is_live_and_offers_cancel_to_writers(
    client: TestClient, keys: dict[str, str], settings: Settings, admin: dict
) -> None:
    upload = client.post(
        "/v1/datasets",
        headers=admin,
        files={"file": ("d.csv", blobs_csv())},
        data={"target": "label"},
    ).json()
    job = client.post(
        "/v1/jobs",
        headers=admin,
        json={
            "kind": "search",
            "dataset_id": upload["id"],
            "model_name": "m",
            "search": {"max_trials": 3},
        },
    ).json()
    sign_in(client, keys["write"])
    page = client.get(f"/ui/jobs/{job['id']}").text
    assert 'data-live="1"' in page and 'id="cancel"' in page
    fragment = client.get(f"/ui/jobs/{job['id']}", headers={"X-Kiln-Fragment": "1"}).text
    assert "<header>" not in fragment and "Job #" in fragment
    cancelled = client.post(f"/ui/jobs/{job['id']}/cancel", follow_redirects=False)
    assert cancelled.status_code == 303
    assert client.get(f"/v1/jobs/{job['id']}", headers=admin).json()["status"] == "cancelled"


def test_the_dataset_page_shows_its_profile(
    client: TestClient, keys: dict[str, str], admin: dict
) -> None:
    rows = [
        f"{'' if i % 7 == 0 else round(i / 3, 2)},{('red', 'blue', '')[i % 3]},{'ab'[i % 2]}"
        for i in range(60)
    ]  # gaps in both columns
    csv = ("x,colour,label\n" + "\n".join(rows) + "\n").encode()
    upload = client.post(
        "/v1/datasets", headers=admin, files={"file": ("d.csv", csv)}, data={"target": "label"}
    ).json()
    sign_in(client, keys["read"])
    page = client.get(f"/ui/datasets/{upload['id']}").text
    assert 'id="columns"' in page and "colour" in page and "categorical" in page
    assert 'id="target"' in page


def test_unknown_things_get_an_html_page_naming_them(
    client: TestClient, keys: dict[str, str]
) -> None:
    sign_in(client, keys["read"])
    for path, status in (
        ("/ui/jobs/999999", 404),
        ("/ui/models/nope", 404),
        ("/ui/datasets/999999", 404),
        ("/ui/jobs/abc", 422),
    ):
        answer = client.get(path)
        assert answer.status_code == status and answer.headers["content-type"].startswith(
            "text/html"
        )
        assert "Back to the dashboard" in answer.text


@pytest.mark.parametrize(
    "asset",
    [
        "/ui/static/plotly.min.js",
        "/ui/static/ui.js",
        "/ui/static/ui.css",
        "/static/docs/swagger-ui-bundle.js",
        "/static/docs/redoc.standalone.js",
    ],
)
def test_assets_are_served_by_the_gateway(client: TestClient, asset: str) -> None:
    answer = client.get(asset)
    assert answer.status_code == 200 and len(answer.content) > 1000


def test_docs_pages_load_nothing_from_elsewhere(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "/static/docs/" in html
        assert not re.search(r'(src|href)="https?://', html), html
        assert "fonts.googleapis" not in html


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"alias": "production", "version": "abc"}, 422, "version"),
        ({"alias": "production", "version": "99"}, 404, "no version 99"),
        ({"alias": "../etc", "version": "1"}, 422, "alias"),
        ({"version": "1"}, 422, "alias"),
    ],
)
def test_a_bad_alias_form_is_refused_and_changes_nothing(
    client: TestClient,
    keys: dict[str, str],
    admin: dict,
    settings: Settings,
    classifier_onnx,
    form: dict,
    status: int,
    message: str,
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    sign_in(client, keys["write"])
    answer = client.post(
        "/ui/models/flowers/aliases", data=form, headers={"Origin": "http://testserver"}
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert message in unescape(answer.text)
    aliases = client.get("/v1/models/flowers", headers=admin).json()["aliases"]
    assert aliases == {"production": 1}  # as registering v1 set it


def test_the_model_page_panel_of_an_uploaded_model(
    client: TestClient, keys: dict[str, str], settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    sign_in(client, keys["write"])
    page = unescape(client.get("/ui/models/flowers").text)
    assert 'id="panel" data-version="1"' in page and "serves requests that name no version" in page
    assert "<td>input</td><td>tensor</td><td>FP32</td><td>[batch, 4]</td>" in page
    assert '"inputs": [[0.0, 0.0, 0.0, 0.0]]' in page  # the example, from the signature
    assert "json={'inputs': [[0.0, 0.0, 0.0, 0.0]]}" in page  # Python, not JSON literals
    tried = client.post(
        "/ui/models/flowers/predict",
        headers={"Origin": "http://testserver"},
        data={"version": "1", "body": '{"inputs": [[6, 6, 6, 6]]}'},
    )
    assert tried.status_code == 200 and tried.json()["predictions"] == ["c"]
    refused = client.post(
        "/ui/models/flowers/predict",
        headers={"Origin": "http://testserver"},
        data={"version": "1", "body": '{"inputs": [[6, 6]]}'},
    )
    assert refused.status_code == 422 and "4" in refused.json()["detail"]
    client.cookies.clear()
    sign_in(client, keys["read"])
    page = client.get("/ui/models/flowers").text
    assert 'id="try"' not in page and "needs a key with the infer or write scope" in page


def test_per_class_rows_come_from_the_confusion_matrix() -> None:
    from app.ui.model_panel import class_rows

    rows = class_rows([[8, 2], [1, 9]], ["no", "yes"])
    assert [r.label for r in rows] == ["no", "yes"] and [r.support for r in rows] == [10, 10]
    assert rows[0].precision == pytest.approx(8 / 9) and rows[0].recall == pytest.approx(0.8)
    assert rows[1].f1 == pytest.approx(2 * (9 / 11) * 0.9 / ((9 / 11) + 0.9))
    never = class_rows([[0, 0], [0, 5]], ["x", "y"])
    assert never[0].precision is None and never[0].recall is None and never[0].f1 is None


def test_the_model_page_says_where_a_version_runs_and_why(
    client: TestClient, keys: dict[str, str], settings: Settings, classifier_onnx
) -> None:
    register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    sign_in(client, keys["read"])
    page = unescape(client.get("/ui/models/flowers").text)
    assert 'id="runs-in"' in page and "Runs in the gateway: dense layers (a test graph)" in page

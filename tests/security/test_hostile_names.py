"""Names with a trailing newline, a control character, a Unicode line separator or a space at
either end, sent to every route that takes a name: the path parameters of every route the
app defines (the API's, from its routers and OpenAPI document, and the dashboard's), the
name fields of the request bodies the OpenAPI document describes, and the gRPC inference
service. Each answer is a 4xx (a 404 at most for a lookup), never a 5xx; nothing is
stored and no second object appears under a name that differs from one already there
only by such a character."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import session_scope
from app.core.names import RULES, refused_character
from app.storage.base import InvalidArtifactKey, check_key
from app.tables import Alias, ApiKey, Dataset, Job, Model, ModelVersion
from tests.conftest import register
from tests.helpers import ui_sign_in
from tests.security.test_route_walk import defined

# The characters the issue names, and their cousins: C0/C1 controls, DEL, Unicode line and
# paragraph separators, a zero-width space, a bidi override, plain and no-break spaces.
PIECES = [
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x0b",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u202e",
    "\ufeff",
    " ",
    "\u00a0",
]
PATH_PARAMS = {
    "name": "flowers",
    "alias": "production",
    "version": "1",
    "dataset_id": "1",
    "job_id": "1",
    "key_id": "1",
    "part": "1",
}
NAME_PARAMS = ("name", "alias")
# Request-body fields that hold a name, by the OpenAPI schema that declares them; each has a
# case below, and a new one fails test_every_name_field_has_a_case until it gets one.
FROM_LOG = "Body_dataset_from_request_log_v1_datasets_from_log_post"
BODY_NAME_FIELDS = {
    ("SearchJobCreate", "model_name"),
    ("PredictJobCreate", "model"),
    ("VersionRef", "model"),
    ("InitFrom", "model"),
    ("KeyCreate", "name"),
    ("Body_upload_dataset_v1_datasets_post", "name"),
    ("Body_upload_dataset_v1_datasets_post", "target"),
    ("Body_submit_batch_prediction_v1_jobs_predict_post", "model"),
    ("TagsPatch", "tags"),
    ("RetrainJobCreate", "model"),
    ("RetrainJobCreate", "alias"),
    (FROM_LOG, "model"),
    (FROM_LOG, "name"),
    (FROM_LOG, "target"),
}
# Free text (a space inside is fine; at either end, or a control character, is not).
FREE_TEXT_FIELDS = {
    ("KeyCreate", "name"),
    ("Body_upload_dataset_v1_datasets_post", "name"),
    ("Body_upload_dataset_v1_datasets_post", "target"),
    (FROM_LOG, "name"),
    (FROM_LOG, "target"),
}
FIELD_NAMES = {"name", "model", "model_name", "alias", "target", "tags"}
CSV = b"a,b,label\n" + b"".join(
    b"%d,%d,%s\n" % (i, i % 5, b"xy"[i % 2 : i % 2 + 1]) for i in range(24)
)
LABELS = b"request_id,label\nr1,x\n"
SAME_SITE = {"Origin": "http://testserver"}
FUZZ = fuzz_settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def hostile(base: str) -> st.SearchStrategy[str]:
    """``base`` with one of PIECES before it, after it or inside it."""

    def place(piece: str, where: int) -> str:
        return [piece + base, base + piece, base[:2] + piece + base[2:]][where]

    return st.builds(place, st.sampled_from(PIECES), st.integers(0, 2))


def test_the_pieces_break_every_rule() -> None:
    for rule in RULES:
        for piece in PIECES:
            for name in ("abc" + piece, piece + "abc", "ab" + piece + "c"):
                if piece in (" ", "\u00a0") and name == "ab" + piece + "c":
                    continue  # a space inside free text (a column name) is allowed
                assert not rule.is_valid(name), (rule.kind, name)
    assert refused_character("a\u2028b") == "\u2028" and refused_character("plain") is None


@pytest.fixture
def world(
    settings: Settings, client: TestClient, admin: dict, classifier_onnx: Path
) -> dict[str, Any]:
    """One model with two versions and an alias, one dataset, a signed-in dashboard."""
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    assert (
        client.put(
            "/v1/models/flowers/aliases/production", headers=admin, json={"version": 1}
        ).status_code
        == 200
    )
    uploaded = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label"},
        files={"file": ("t.csv", CSV, "text/csv")},
    )
    assert uploaded.status_code == 201, uploaded.text
    ui_sign_in(client, admin["Authorization"].removeprefix("Bearer "))
    return {"onnx": classifier_onnx.read_bytes()}


def stored(settings: Settings) -> tuple[Any, ...]:
    """What the registry and the artifact store hold, to compare before and after."""
    with session_scope(settings.database_url) as session:
        counts = tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (ModelVersion, Alias, Dataset, Job, ApiKey)
        )
        names = tuple(session.scalars(select(Model.name).order_by(Model.name)))
        tags = tuple(repr(tag) for tag in session.scalars(select(Model.tags)))
    files = tuple(
        sorted(
            str(path)
            for path in settings.data_dir.rglob("*")
            if path.is_file() and "artifacts" in path.parts
        )
    )
    return counts, names, tags, files


def name_routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, template, parameter) for each name parameter of each route."""
    return sorted(
        (method, template, param)
        for method, template in defined(app)
        for param in NAME_PARAMS
        if "{" + param + "}" in template
    )


def _body(method: str, template: str, world: dict[str, Any]) -> dict[str, Any]:
    """A body that is valid for the route, so that the name is the only thing wrong."""
    if template.startswith("/ui"):
        return {
            "data": {"alias": "production", "version": "1", "body": "{}"},
            "headers": SAME_SITE,
            "follow_redirects": False,
        }
    if template.endswith("/versions") and method == "POST":
        return {"files": {"file": ("m.onnx", world["onnx"])}, "data": {"labels": '["a", "b", "c"]'}}
    if template.endswith("/infer"):
        return {
            "json": {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
                ]
            }
        }
    bodies: dict[str, Any] = {
        "/predict": {"inputs": [[1, 2, 3, 4]]},
        "/aliases/{alias}": {"version": 1},
        "/serving": {},
        "/{name}": {"tags": {"team": "x"}},
        "/versions/{version}": {"tags": {"team": "x"}},
    }
    for ending, body in bodies.items():
        if method in ("PUT", "PATCH", "POST") and template.endswith(ending):
            return {"json": body}
    return {}


def test_every_route_with_a_name_is_walked(app: FastAPI) -> None:
    routes = name_routes(app)
    assert {template.split("/")[1] for _, template, _ in routes} == {"v1", "v2", "ui"}
    assert len(routes) >= 25


@FUZZ
@given(data=st.data())
def test_hostile_names_in_paths_are_4xx_and_store_nothing(
    app: FastAPI,
    client: TestClient,
    admin: dict,
    settings: Settings,
    world: dict[str, Any],
    data: st.DataObject,
) -> None:
    method, template, param = data.draw(st.sampled_from(name_routes(app)))
    name = data.draw(hostile(PATH_PARAMS[param]))
    values = {**PATH_PARAMS, param: urllib.parse.quote(name, safe="")}
    if data.draw(st.booleans()):  # as a client that sends %0A literally
        values[param] = PATH_PARAMS[param] + "%0A"
    path = template.format(**values)
    before = stored(settings)
    arguments = _body(method, template, world)
    headers = {**admin, **arguments.pop("headers", {})}
    answer = client.request(method, path, headers=headers, **arguments)
    assert 400 <= answer.status_code < 500, (method, path, answer.status_code, answer.text)
    assert stored(settings) == before, (method, path)


def request_schemas(document: dict[str, Any]) -> set[str]:
    """The schemas a request body can hold: each operation's body schema and every schema
    reachable from it by $ref (a response-only schema is not among them)."""
    schemas = document["components"]["schemas"]
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in found:
                    found.add(name)
                    walk(schemas[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                walk(operation.get("requestBody"))
    return found


def test_every_name_field_has_a_case(app: FastAPI) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    found = {
        (schema, field)
        for schema in request_schemas(document)
        for field in schemas[schema].get("properties", {})
        if field in FIELD_NAMES
    }
    assert found == BODY_NAME_FIELDS


def _body_case(field: tuple[str, str], name: str, onnx: bytes) -> tuple[str, dict[str, Any]]:
    """(path, request arguments) that put ``name`` into ``field`` and nothing else wrong."""
    search = {"kind": "search", "dataset_id": 1, "model_name": "flowers"}
    cases: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
        ("SearchJobCreate", "model_name"): ("/v1/jobs", {"json": {**search, "model_name": name}}),
        ("PredictJobCreate", "model"): (
            "/v1/jobs",
            {"json": {"kind": "predict", "model": name, "dataset_id": 1}},
        ),
        ("VersionRef", "model"): (
            "/v1/jobs",
            {
                "json": {
                    "kind": "compress",
                    "source": {"model": name, "version": 1},
                    "compression": {"methods": ["fp16"]},
                }
            },
        ),
        ("InitFrom", "model"): (
            "/v1/jobs",
            {"json": {**search, "search": {"init_from": {"model": name, "version": 1}}}},
        ),
        ("KeyCreate", "name"): ("/v1/keys", {"json": {"name": name, "scope": "read"}}),
        ("Body_upload_dataset_v1_datasets_post", "name"): (
            "/v1/datasets",
            {
                "data": {"target": "label", "name": name},
                "files": {"file": ("t.csv", CSV, "text/csv")},
            },
        ),
        ("Body_upload_dataset_v1_datasets_post", "target"): (
            "/v1/datasets",
            {"data": {"target": name}, "files": {"file": ("t.csv", CSV, "text/csv")}},
        ),
        ("Body_submit_batch_prediction_v1_jobs_predict_post", "model"): (
            "/v1/jobs/predict",
            {"data": {"model": name}, "files": {"file": ("t.csv", CSV, "text/csv")}},
        ),
        ("TagsPatch", "tags"): ("/v1/models/flowers", {"json": {"tags": {name: "x"}}}),
        ("RetrainJobCreate", "model"): (
            "/v1/jobs",
            {"json": {"kind": "retrain", "model": name, "dataset_id": 1}},
        ),
        ("RetrainJobCreate", "alias"): (
            "/v1/jobs",
            {"json": {"kind": "retrain", "model": "flowers", "dataset_id": 1, "alias": name}},
        ),
        **{
            (FROM_LOG, field): (
                "/v1/datasets/from-log",
                {
                    "data": {"model": "flowers", "target": "label", field: name},
                    "files": {"labels": ("labels.csv", LABELS, "text/csv")},
                },
            )
            for field in ("model", "name", "target")
        },
    }
    return cases[field]


@FUZZ
@given(data=st.data())
def test_hostile_names_in_bodies_are_422_and_store_nothing(
    client: TestClient, admin: dict, settings: Settings, world: dict[str, Any], data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(sorted(BODY_NAME_FIELDS)))
    base = {"target": "label", "name": "trusted", "tags": "team"}.get(field[1], "flowers")
    name = data.draw(hostile(base))
    free_text = field in FREE_TEXT_FIELDS
    assume(not (free_text and name.strip() == name and refused_character(name) is None))
    path, arguments = _body_case(field, name, world["onnx"])
    method = "PATCH" if field[0] == "TagsPatch" else "POST"
    before = stored(settings)
    answer = client.request(method, path, headers=admin, **arguments)
    assert answer.status_code == 422, (field, name, answer.status_code, answer.text)
    assert stored(settings) == before, (field, name)


def test_a_lower_layer_refusal_is_a_422_and_is_counted(
    app: FastAPI, client: TestClient, admin: dict
) -> None:
    """The artifact store's own key check, reached by a value no API check stopped, is a
    422 with the store's reason (not a 500), and kiln_refused_below counts it."""
    with pytest.raises(InvalidArtifactKey, match="U\\+000A"):
        check_key("uploads/up1\n/x.onnx")

    @app.get("/v1/test-refusal")
    def refuse() -> None:  # a route whose only check is the store's
        check_key("uploads/up1\n/x.onnx")

    answer = client.get("/v1/test-refusal", headers=admin)
    assert answer.status_code == 422 and "invalid artifact key" in answer.json()["detail"]
    assert 'kiln_refused_below_total{layer="storage"} 1.0' in client.get("/metrics").text


def test_uploads_to_names_that_differ_by_a_control_character_create_nothing(
    client: TestClient, admin: dict, settings: Settings, classifier_onnx: Path
) -> None:
    """The issue's own case, then every piece: a model named 'up1', and not 'up1\\n'."""
    files = {"file": ("m.onnx", classifier_onnx.read_bytes())}
    data = {"labels": '["a", "b", "c"]'}
    first = client.post("/v1/models/up1/versions", headers=admin, files=files, data=data)
    assert first.status_code == 201, first.text
    before = stored(settings)
    for piece in PIECES:
        for name in ("up1" + piece, piece + "up1"):
            path = "/v1/models/" + urllib.parse.quote(name, safe="") + "/versions"
            answer = client.post(path, headers=admin, files=files, data=data)
            assert answer.status_code == 422, (name, answer.text)
            assert "model name" in str(answer.json()["detail"])
    literal = client.post("/v1/models/up1%0A/versions", headers=admin, files=files, data=data)
    assert literal.status_code == 422 and "U+000A" in str(literal.json()["detail"])
    assert stored(settings) == before
    listed = client.get("/v1/models", headers=admin).json()["items"]
    assert [model["name"] for model in listed] == ["up1"]


def test_the_client_sends_a_name_as_one_path_segment(
    client: TestClient, admin: dict, world: dict[str, Any]
) -> None:
    """The Python client (and so the CLI) percent-encodes names: '?', '#' or '%' in a name
    reach the server as part of the name, which refuses them, not as another route; a
    '/' (which servers decode back into a separator) is refused before sending."""
    from modelkiln.client import _segment

    assert _segment("up1\n") == "up1%0A" and _segment("a?x#y") == "a%3Fx%23y"
    for unsendable in ("flowers/versions", "../keys", ".."):
        with pytest.raises(ValueError, match="cannot be a URL path segment"):
            _segment(unsendable)
    for name in ("flowers?limit=1", "flowers#x", "flowers\n", "flowers%0A"):
        answer = client.get("/v1/models/" + _segment(name), headers=admin)
        assert answer.status_code in (404, 422), (name, answer.text)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/{}/predict"),
        ("POST", "/v2/models/{}/infer"),
        ("GET", "/v2/models/{}"),
        ("GET", "/v2/models/{}/ready"),
        ("GET", "/v1/models/{}"),
    ],
)
def test_a_huge_model_name_is_a_short_404(
    client: TestClient, admin: dict, method: str, path: str
) -> None:
    """A 60 KB name is refused before any lookup, and the answer quotes at most 80
    characters of it."""
    body = (
        {"inputs": [[1, 2, 3, 4]]}
        if "predict" in path
        else (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
                ]
            }
            if "infer" in path
            else None
        )
    )
    answer = client.request(method, path.format("m" * 60_000), headers=admin, json=body)
    assert answer.status_code in (400, 404, 422), answer.text[:200]
    assert len(answer.content) < 1000
    assert client.get("/v2/health/live").status_code == 200

"""Every route the gateway defines, walked for its guard: 401 without a key, 403 for each
scope that must not pass, and neither for a scope that must. The routes are enumerated
from the app itself (FastAPI's routers, the inference fast path in front of them goes with
every request), so a new route that is not in ``GUARDS`` fails here until someone decides
who may call it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route

from app.contracts.enums import Scope
from tests.conftest import bearer
from tests.helpers import ui_sign_in

PUBLIC = "public"
ANY_KEY = "any key"
# The dashboard's guard is the signed-in key in its cookie, not a bearer header.
UI_OPEN, UI_READ, UI_WRITE = "ui: open", "ui: read", "ui: write"
# (method, path template) -> the scope it needs, ANY_KEY (any valid key), PUBLIC, or UI_*.
GUARDS: dict[tuple[str, str], Scope | str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/v2/health/live"): PUBLIC,
    ("GET", "/v2/health/ready"): PUBLIC,
    ("POST", "/v1/models/{name}/predict"): Scope.INFER,
    ("POST", "/v1/models/{name}/explain"): Scope.INFER,
    ("POST", "/v1/models/{name}:explain"): Scope.INFER,
    ("PUT", "/v1/models/{name}/versions/{version}/explain/background"): Scope.WRITE,
    ("GET", "/v2"): PUBLIC,  # server metadata: name, version, extensions (as Triton)
    ("GET", "/v2/models/{name}"): ANY_KEY,
    ("GET", "/v2/models/{name}/versions/{version}"): ANY_KEY,
    ("GET", "/v2/models/{name}/ready"): ANY_KEY,
    ("GET", "/v2/models/{name}/versions/{version}/ready"): ANY_KEY,
    ("POST", "/v2/models/{name}/infer"): Scope.INFER,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): Scope.INFER,
    ("GET", "/v1/datasets"): Scope.READ,
    ("POST", "/v1/datasets"): Scope.WRITE,
    ("GET", "/v1/datasets/{dataset_id}"): Scope.READ,
    ("GET", "/v1/jobs"): Scope.READ,
    ("POST", "/v1/jobs"): Scope.WRITE,
    ("GET", "/v1/jobs/{job_id}"): Scope.READ,
    ("GET", "/v1/jobs/{job_id}/trials"): Scope.READ,
    ("GET", "/v1/jobs/{job_id}/pareto"): Scope.READ,
    ("GET", "/v1/jobs/{job_id}/report"): Scope.READ,
    ("POST", "/v1/jobs/{job_id}/cancel"): Scope.WRITE,
    ("POST", "/v1/jobs/predict"): Scope.WRITE,
    ("GET", "/v1/jobs/{job_id}/output"): Scope.READ,
    ("GET", "/v1/models"): Scope.READ,
    ("GET", "/v1/models/{name}"): Scope.READ,
    ("PATCH", "/v1/models/{name}"): Scope.WRITE,
    ("GET", "/v1/models/{name}/versions"): Scope.READ,
    ("POST", "/v1/models/{name}/versions"): Scope.WRITE,
    ("GET", "/v1/models/{name}/versions/{version}"): Scope.READ,
    ("PATCH", "/v1/models/{name}/versions/{version}"): Scope.WRITE,
    ("DELETE", "/v1/models/{name}/versions/{version}"): Scope.WRITE,
    ("GET", "/v1/models/{name}/versions/{version}/artifact"): Scope.READ,
    ("DELETE", "/v1/models/{name}/versions/{version}/artifact"): Scope.WRITE,
    ("DELETE", "/v1/datasets/{dataset_id}"): Scope.WRITE,
    ("DELETE", "/v1/jobs/{job_id}/files"): Scope.WRITE,
    ("GET", "/v1/models/{name}/versions/{version}/example"): Scope.READ,
    ("PUT", "/v1/models/{name}/aliases/{alias}"): Scope.WRITE,
    ("DELETE", "/v1/models/{name}/aliases/{alias}"): Scope.WRITE,
    ("GET", "/v1/models/{name}/aliases/{alias}/history"): Scope.READ,
    ("PUT", "/v1/models/{name}/serving"): Scope.WRITE,
    ("GET", "/v1/models/{name}/aliases/{alias}"): Scope.READ,
    ("POST", "/v1/models/{name}/aliases/{alias}/promote"): Scope.WRITE,
    ("GET", "/v1/models/{name}/traffic"): Scope.READ,
    ("GET", "/v1/models/{name}/drift"): Scope.READ,
    ("GET", "/v1/models/{name}/drift/progress"): Scope.READ,
    ("GET", "/v1/models/{name}/serving/stats"): Scope.READ,
    ("GET", "/v1/models/{name}/events"): Scope.READ,
    ("GET", "/v1/models/{name}/logs"): Scope.LOGS,  # clients' raw inputs: never read alone
    ("GET", "/v1/models/{name}/logs/{part}"): Scope.LOGS,
    ("POST", "/v1/datasets/from-log"): Scope.WRITE_LOGS,
    ("GET", "/v1/keys"): Scope.ADMIN,
    ("POST", "/v1/keys"): Scope.ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): Scope.ADMIN,
    ("GET", "/metrics"): PUBLIC,  # Prometheus scrapes without a key (README: open)
    ("GET", "/ui/static/plotly.min.js"): PUBLIC,
    ("GET", "/ui"): UI_OPEN,
    ("GET", "/ui/login"): UI_OPEN,
    ("POST", "/ui/login"): UI_OPEN,
    ("POST", "/ui/logout"): UI_OPEN,
    ("GET", "/ui/jobs"): UI_READ,
    ("GET", "/ui/jobs/{job_id}"): UI_READ,
    ("POST", "/ui/jobs/{job_id}/cancel"): UI_WRITE,
    ("GET", "/ui/jobs/{job_id}/output"): UI_READ,
    ("GET", "/ui/models"): UI_READ,
    ("GET", "/ui/models/{name}"): UI_READ,
    ("POST", "/ui/models/{name}/aliases"): UI_WRITE,
    ("POST", "/ui/models/{name}/predict"): UI_WRITE,  # infer scope, of a key that may read
    ("POST", "/ui/models/{name}/explain"): UI_WRITE,  # as predict: infer, of a key that may read
    ("GET", "/ui/models/{name}/versions/{version}/artifact"): UI_READ,
    ("GET", "/ui/datasets"): UI_READ,
    ("GET", "/ui/datasets/{dataset_id}"): UI_READ,
    ("GET", "/ui/serving"): UI_READ,
}
UI_GUARDS = (UI_OPEN, UI_READ, UI_WRITE)
GRANTED_BY: dict[Scope | str, set[Scope]] = {
    ANY_KEY: set(Scope),
    Scope.ADMIN: {Scope.ADMIN},
    Scope.WRITE: {Scope.ADMIN, Scope.WRITE, Scope.WRITE_LOGS},
    Scope.READ: {Scope.ADMIN, Scope.WRITE, Scope.READ, Scope.READ_LOGS, Scope.WRITE_LOGS},
    Scope.INFER: {Scope.ADMIN, Scope.WRITE, Scope.INFER, Scope.WRITE_LOGS},
    # The request log: only keys created with it (read and write keys are refused).
    Scope.LOGS: {Scope.ADMIN, Scope.LOGS, Scope.READ_LOGS, Scope.WRITE_LOGS},
    Scope.WRITE_LOGS: {Scope.ADMIN, Scope.WRITE_LOGS},
}
SAMPLE = {
    "name": "walked",
    "version": "1",
    "alias": "prod",
    "dataset_id": "1",
    "job_id": "1",
    "key_id": "999999",
    "part": "1",
}


def _routes(routes: list[BaseRoute]) -> Iterator[Route]:
    """Every endpoint route, through included routers."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _routes(nested.routes)
        elif isinstance(route, Route):
            yield route


def defined(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in _routes(app.routes)
        for method in (route.methods or set())
        if method != "HEAD"
    }


def url(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: SAMPLE[match[1]], template)


def test_every_route_has_a_decided_guard(app: FastAPI) -> None:
    routes = defined(app)
    assert routes - GUARDS.keys() == set(), "new routes: decide who may call them in GUARDS"
    assert GUARDS.keys() - routes == set(), "routes in GUARDS that no longer exist"
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    api_routes = {
        (method, route.path)
        for route in _routes(app.routes)
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert api_routes == documented  # nothing served that the schema hides...
    hidden = {
        route.path
        for route in _routes(app.routes)
        if isinstance(route, APIRoute) and not route.include_in_schema
    }
    assert all(path.startswith("/ui") for path in hidden)  # ...but the dashboard's pages


@pytest.mark.parametrize(
    ("method", "template"),
    sorted(route for route, guard in GUARDS.items() if guard not in UI_GUARDS),
)
def test_no_key_is_401_and_a_wrong_scope_is_403(
    client: TestClient, keys: dict[str, str], method: str, template: str
) -> None:
    needed = GUARDS[(method, template)]
    anonymous = client.request(method, url(template))
    if needed is PUBLIC:
        assert anonymous.status_code < 400, anonymous.text
        return
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert (
        client.request(method, url(template), headers=bearer("kiln_forged-key")).status_code == 401
    )
    for scope in Scope:
        answer = client.request(method, url(template), headers=bearer(keys[scope.value]))
        if scope in GRANTED_BY[needed]:
            assert answer.status_code not in (401, 403), (scope, answer.text)
        else:
            assert answer.status_code == 403, (scope, answer.text)
            body = answer.json()  # /v2 answers in the inference protocol's {"error": ...}
            assert f"this route needs '{needed}'" in body.get("detail", body.get("error"))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/walked/versions/1/infer",
        "/v2/models/walked/versions/1/infer?x=1",
        "/v1/models/walked/predict?version=1",
    ],
)
def test_the_fast_path_variants_need_a_key(client: TestClient, path: str) -> None:
    """Shapes the fast path parses itself (query strings, unknown routes) never skip the
    key check: they are answered 401, or passed on to FastAPI's own 404."""
    answer = client.post(path, json={"inputs": [[1.0]]})
    assert answer.status_code in (401, 404)
    if answer.status_code == 404:
        assert client.post(
            path, json={"inputs": [[1.0]]}, headers=bearer("kiln_forged-key")
        ).status_code in (401, 404)


UI_FORM = {"alias": "prod", "version": "1", "body": "{}"}
SAME_SITE = {"Origin": "http://testserver"}


@pytest.mark.parametrize(
    ("method", "template"), sorted(route for route, guard in GUARDS.items() if guard in UI_GUARDS)
)
def test_the_dashboard_needs_a_signed_in_key_of_the_right_scope(
    client: TestClient, keys: dict[str, str], method: str, template: str
) -> None:
    """No cookie (a bearer header does not count): sent to sign in. With a signed-in key:
    403 for each scope that must not pass, neither 401 nor 403 for one that must."""
    guard = GUARDS[(method, template)]
    data = UI_FORM if method == "POST" else None
    anonymous = client.request(
        method,
        url(template),
        data=data,
        headers={**SAME_SITE, **bearer(keys["admin"])},
        follow_redirects=False,
    )
    if guard == UI_OPEN:
        assert anonymous.status_code < 500, anonymous.text
        return
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/login"
    needed = Scope.READ if guard == UI_READ else Scope.WRITE
    for scope in Scope:
        if scope not in GRANTED_BY[Scope.READ]:  # refused at sign-in: it sees no page at all
            refused = client.post("/ui/login", data={"key": keys[scope.value]}, headers=SAME_SITE)
            assert refused.status_code == 401 and "kiln_ui_session" not in refused.cookies
            continue
        ui_sign_in(client, keys[scope.value])
        answer = client.request(
            method, url(template), data=data, headers=SAME_SITE, follow_redirects=False
        )
        client.cookies.clear()
        if scope in GRANTED_BY[needed]:
            assert answer.status_code not in (303, 401, 403), (scope, answer.text)
        else:
            assert answer.status_code == 403, (scope, answer.text)

"""The serving page draws each model's traffic second by second from the gateway's own
counters: requests per second, error rate and latency percentiles per version, the shadow
marked as one, and the production alias's split beside what each version answered."""

from __future__ import annotations

import json
import re
import time
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from tests.conftest import register
from tests.helpers import ui_sign_in


def figures_of(page: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in re.findall(r'<script type="application/json" class="figures">(.*?)</script>', page):
        found.update(json.loads(part))
    return found


def test_the_versions_the_shadow_and_the_split_over_time(
    client: TestClient,
    app: FastAPI,
    admin: dict[str, str],
    keys: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
) -> None:
    ui_sign_in(client, keys["read"])
    assert 'id="no-traffic"' in client.get("/ui/serving").text
    for _ in range(3):
        register(settings, classifier_onnx, labels=["a", "b", "c"])
    split = {"versions": [{"version": 1, "weight": 60}, {"version": 2, "weight": 40}], "shadow": 3}
    assert client.put("/v1/models/flowers/aliases/production", headers=admin, json=split).is_success
    for _ in range(40):
        row = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
        assert client.post("/v1/models/flowers/predict", headers=admin, json=row).status_code == 200
    assert gateway_of(app).monitors.wait_idle(30)
    time.sleep(1.05)  # the page shows complete seconds: the requests' second must end
    page = unescape(client.get("/ui/serving?seconds=60").text)
    section = page[page.index('data-model="flowers"') :]
    assert "production: " in section and "v1 60%" in section and "v2 40%" in section
    assert 'shadow <span class="arm shadow-version">v3</span>' in section
    assert '<tr data-version="3" data-role="shadow">' in section
    assert '<span class="status shadow">shadow</span>' in section
    figures = figures_of(page)
    rate = figures["flowers:rate"]["data"]
    names = {trace["name"] for trace in rate}
    assert "v3 (shadow)" in names and names <= {"v1 (60%)", "v2 (40%)", "v3 (shadow)"}
    shadow = next(trace for trace in rate if trace["name"] == "v3 (shadow)")
    assert shadow["line"]["dash"] == "dash" and sum(shadow["y"]) == 40 and len(shadow["x"]) == 60
    assert sum(sum(t["y"]) for t in rate if "shadow" not in t["name"]) == 40
    latency = figures["flowers:latency"]["data"]
    assert {t["name"].rsplit(" ", 1)[1] for t in latency} == {"p50", "p95", "p99"}
    bars = figures["flowers:split"]["data"]
    weights = {bar["name"]: bar["x"][0] for bar in bars}
    assert weights == {"v1": 60, "v2": 40}
    assert sum(bar["x"][1] for bar in bars) == pytest.approx(100, abs=0.1)  # answered, %
    for kind in ("rate", "errors", "latency", "split"):
        assert f'id="chart-flowers-{kind}" data-figure="flowers:{kind}"' in page


def test_a_bad_window_is_refused_naming_it(client: TestClient, keys: dict[str, str]) -> None:
    ui_sign_in(client, keys["read"])
    answer = client.get("/ui/serving?seconds=100000")
    assert answer.status_code == 422 and "seconds" in answer.text

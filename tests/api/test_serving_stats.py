"""GET /v1/models/{name}/serving/stats: each version's requests, errors and latency
percentiles per second from the gateway's own counters, the shadow's copies apart and
marked, beside the production alias's weights; bad parameters are 4xx naming them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from tests.conftest import register

ROW = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}


def stats_once_counted(client: TestClient, admin: dict[str, str], total: int) -> dict[str, Any]:
    """The stats once ``total`` requests show (the newest complete second is the last
    one shown: a request made now shows within a second)."""
    deadline = time.monotonic() + 10
    while True:
        answer = client.get("/v1/models/flowers/serving/stats?seconds=60", headers=admin)
        assert answer.status_code == 200, answer.text
        stats = answer.json()
        counted = sum(s["totals"]["requests"] for s in stats["series"] if s["role"] == "answered")
        if counted >= total or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def test_versions_their_weights_and_the_shadow_second_by_second(
    client: TestClient,
    app: FastAPI,
    admin: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
) -> None:
    for _ in range(3):
        register(settings, classifier_onnx, labels=["a", "b", "c"])
    split = {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}], "shadow": 3}
    assert client.put("/v1/models/flowers/aliases/production", headers=admin, json=split).is_success
    for _ in range(30):
        answer = client.post("/v1/models/flowers/predict", headers=admin, json=ROW)
        assert answer.status_code == 200, answer.text
    wrong = {"inputs": [[1.0, 2.0]]}  # two numbers where four are taken: a 422 of version 1
    assert (
        client.post("/v1/models/flowers/predict?version=1", headers=admin, json=wrong).status_code
        == 422
    )
    assert gateway_of(app).monitors.wait_idle(30)  # the shadow has run its copies
    stats = stats_once_counted(client, admin, 31)
    assert stats["model"] == "flowers" and stats["seconds"] == 60 and stats["processes"] == 1
    assert stats["production"] == [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]
    assert stats["shadow"] == 3
    series = {(s["version"], s["role"]): s for s in stats["series"]}
    assert set(series) <= {(1, "answered"), (2, "answered"), (3, "shadow")}
    answered = [s for s in stats["series"] if s["role"] == "answered"]
    assert sum(s["totals"]["requests"] for s in answered) == 31
    assert sum(s["totals"]["client_errors"] for s in answered) == 1
    assert {s["weight"] for s in answered} <= {70, 30}
    one = series[(1, "answered")]
    assert len(one["requests"]) == 60 and len(one["p99_ms"]) == 60
    assert sum(one["requests"]) == one["totals"]["requests"]
    busy = [i for i, n in enumerate(one["requests"]) if n > one["client_errors"][i]]
    assert busy and all(one["p50_ms"][i] is not None for i in busy)
    assert all(one["p50_ms"][i] is None for i, n in enumerate(one["requests"]) if n == 0)
    totals = one["totals"]
    assert 0 < totals["p50_ms"] <= totals["p95_ms"] <= totals["p99_ms"]
    assert totals["error_rate"] == pytest.approx(1 / totals["requests"])
    shadow = series[(3, "shadow")]
    assert shadow["weight"] is None and shadow["totals"]["requests"] == 30  # a copy of each
    assert shadow["totals"]["p50_ms"] is not None


def test_a_model_without_traffic_has_no_series(
    client: TestClient, admin: dict[str, str], settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    answer = client.get("/v1/models/flowers/serving/stats", headers=admin)
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert stats["series"] == [] and stats["seconds"] == 300 and stats["shadow"] is None


@pytest.mark.parametrize("seconds", ["0", "901", "abc", "01", "1.5", "-5"])
def test_bad_seconds_are_422_naming_the_parameter(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
    seconds: str,
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    answer = client.get(f"/v1/models/flowers/serving/stats?seconds={seconds}", headers=admin)
    assert answer.status_code == 422, answer.text
    assert "seconds" in answer.text


def test_an_unknown_model_is_404(client: TestClient, admin: dict[str, str]) -> None:
    answer = client.get("/v1/models/nobody/serving/stats", headers=admin)
    assert answer.status_code == 404 and "nobody" in answer.text

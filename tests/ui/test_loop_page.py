"""The model page's serving loop, from the real registry: the production alias's weights
and shadow, the shadow's agreement on live requests, the newest drift window column by
column (a drifted column marked), and the model's events."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.contracts.traffic import ColumnDrift, DriftReport
from app.core.config import Settings
from app.core.db import session_scope
from app.registry import monitoring
from tests.conftest import register
from tests.helpers import ui_sign_in


def test_the_model_page_shows_routes_shadow_drift_and_events(
    client: TestClient,
    app: FastAPI,
    admin: dict[str, str],
    keys: dict[str, str],
    settings: Settings,
    classifier_onnx: Path,
) -> None:
    for _ in range(3):
        register(settings, classifier_onnx, labels=["a", "b", "c"])
    ui_sign_in(client, keys["read"])
    quiet = unescape(client.get("/ui/models/flowers").text)
    assert '<p id="routes">production: v1 100%</p>' in quiet  # registering v1 pinned it
    # An uploaded version: the page says why it has no drift window, not just that.
    assert "Version 1 has no training profile" in quiet and "drift is not measured" in quiet
    split = {"versions": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}], "shadow": 3}
    assert client.put("/v1/models/flowers/aliases/production", headers=admin, json=split).is_success
    for _ in range(20):
        client.post("/v1/models/flowers/predict", headers=admin, json={"inputs": [[6.0] * 4]})
    monitors = gateway_of(app).monitors
    assert monitors.wait_idle(30)
    monitors.flush()
    with session_scope(settings.database_url) as session:
        report = DriftReport(
            model="flowers",
            version=1,
            rows=500,
            threshold=0.2,
            drifted=["petal"],
            columns=[
                ColumnDrift(
                    column="petal",
                    kind="numeric",
                    psi=1.25,
                    missing_share=0.1,
                    reference_missing_share=0.0,
                ),
                ColumnDrift(
                    column="colour",
                    kind="categorical",
                    psi=0.01,
                    missing_share=0.0,
                    unseen_share=0.05,
                    reference_missing_share=0.0,
                ),
            ],
            ended_at=datetime.now(UTC),
        )
        monitoring.add_drift_window(session, "flowers", 1, report, 1.25)
        monitoring.add_event(session, "flowers", "drift", "drift in 1 column(s): petal")
    page = unescape(client.get("/ui/models/flowers").text)
    assert "v1 90%" in page and "v2 10%" in page and 'id="shadow">v3' in page
    shadows = page[page.index('id="shadows"') :]
    assert "<td>v3</td>" in shadows and "100.00%" in shadows  # rows split 1 and 2: compared
    drift = page[page.index('id="drift-columns"') :]
    row = '<tr class="drifted" data-column="petal"><td>petal</td><td>numeric</td><td>1.2500</td>'
    assert row in drift
    assert "<td>colour</td><td>categorical</td><td>0.0100</td>" in drift and "5.0%" in drift
    assert "drifted: petal" in page and "drift in 1 column(s): petal" in page

"""A search given only a minute (``{"search": {"timeout_s": 60}}``) on a 50,000 x 50
classification table, on a real ``kiln serve`` with two worker processes: every default
family (the network, the trees, the linear model) completes a trial, the early ones on a
10,000-row subsample of the training rows, and each trial says what it was fitted on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from app.search.schedule import SUBSAMPLE_ROWS
from tests.e2e.test_search_jobs import trials_of
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes

ROWS, COLUMNS = 50_000, 50


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    yield module_kiln_server(workers=2)


def wide_table() -> bytes:
    """50 numbers, 20 of them informative (one through a product, one through a sine),
    and a label of three classes from a noisy score."""
    generator = np.random.default_rng(11)
    features = generator.normal(size=(ROWS, COLUMNS)).astype(np.float32)
    weights = np.concatenate([generator.normal(size=20), np.zeros(COLUMNS - 20)])
    score = features @ weights + 2.0 * features[:, 0] * features[:, 1]
    score += 2.0 * np.sin(2.0 * features[:, 2]) + generator.normal(scale=2.0, size=ROWS)
    label = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    names = np.array(["low", "mid", "high"])[label]
    rows = [[f"{v:.3f}" for v in row] + [name] for row, name in zip(features, names, strict=True)]
    return csv_bytes([f"x{i}" for i in range(COLUMNS)] + ["label"], rows)


def test_a_minute_on_a_wide_table_gives_every_default_family_a_trial(
    server: KilnServer,
) -> None:
    dataset_id = server.upload_dataset(wide_table())
    with server.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "a-minute",
                "search": {"timeout_s": 60},
            },
        )
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]), timeout=600)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    assert job["result"]["plan"]["families"] == ["mlp", "gbdt", "linear"]
    trials = trials_of(server, job["id"])
    complete = [t for t in trials if t["state"] == "complete"]
    per_family = Counter(t["params"]["family"] for t in complete)
    rows = Counter((t["params"]["family"], t["metrics"]["train_rows"]) for t in complete)
    print(f"complete trials per family: {dict(per_family)}; (family, rows): {dict(rows)}")
    tested = {k: v for k, v in job["result"]["metrics"].items() if k in ("accuracy", "log_loss")}
    print("winner", job["result"]["trial"], "test", tested, "phases", job["result"]["phases"])
    for t in trials:  # what the minute went on (shown with pytest -s)
        fitted = (t["metrics"] or {}).get("train_rows")
        print(t["number"], t["params"]["family"], t["state"], fitted, t["duration_s"], t["value"])
    assert set(per_family) == {"mlp", "gbdt", "linear"}, trials
    assert all(t["metrics"]["train_rows"] in (SUBSAMPLE_ROWS, 35_000) for t in complete)
    first = {
        family: min(t["number"] for t in complete if t["params"]["family"] == family)
        for family in per_family
    }
    for family, number in first.items():
        trial = next(t for t in complete if t["number"] == number)
        assert trial["metrics"]["train_rows"] == SUBSAMPLE_ROWS, (family, trial)

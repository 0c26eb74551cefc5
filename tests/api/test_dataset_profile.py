"""The profile of an upload on ``GET /v1/datasets/{id}``, and rows without a target left out
and counted."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_datasets import upload
from tests.helpers import csv_bytes


def test_profile_describes_columns_target_and_dropped_rows(client: TestClient,
                                                           admin: dict) -> None:
    rows = [[i, float(i % 3), "cat" if i % 4 else "dog"] for i in range(40)]
    rows[5][2], rows[9][2], rows[30][2] = "", "NA", "  "
    status, body = upload(client, admin, csv_bytes(["a", "b", "label"], rows))
    assert status == 201, body
    assert body["rows"] == 37
    profile = body["profile"]
    assert profile["rows"] == 37
    assert profile["dropped"] == [{"reason": "no value in target column 'label'", "rows": 3,
                                   "first_line": 7}]
    kept = [row for index, row in enumerate(rows) if index not in (5, 9, 30)]
    a, b = profile["columns"]
    assert a == {"name": "a", "type": "numeric", "missing": 0, "distinct": 37, "min": 0.0,
                 "mean": sum(row[0] for row in kept) / 37, "max": 39.0}
    assert (b["distinct"], b["min"], b["max"]) == (3, 0.0, 2.0)
    dogs = sum(row[2] == "dog" for row in kept)
    assert profile["target"]["classes"] == [{"label": "cat", "rows": 37 - dogs},
                                            {"label": "dog", "rows": dogs}]
    assert client.get(f"/v1/datasets/{body['id']}", headers=admin).json()["profile"] == profile


def test_regression_target_spread(client: TestClient, admin: dict) -> None:
    rows = [[i, i * 1.5 + 0.25] for i in range(30)]
    status, body = upload(client, admin, csv_bytes(["x", "label"], rows))
    assert status == 201 and body["task"] == "regression"
    target = body["profile"]["target"]
    assert (target["min"], target["max"], target["classes"]) == (0.25, 43.75, None)
    assert body["profile"]["dropped"] == []


def test_a_file_whose_targets_are_all_missing_is_refused(client: TestClient,
                                                         admin: dict) -> None:
    status, body = upload(client, admin, csv_bytes(["x", "label"], [[i, ""] for i in range(9)]))
    assert status == 422
    assert body["detail"] == "target column 'label' is empty in all 9 data rows"
    assert client.get("/v1/datasets", headers=admin).json()["total"] == 0

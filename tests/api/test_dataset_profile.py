"""The profile of an upload on ``GET /v1/datasets/{id}``, and rows without a target left out
and counted."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.api.test_datasets import upload
from tests.helpers import csv_bytes


def test_profile_describes_columns_target_and_dropped_rows(client: TestClient, admin: dict) -> None:
    rows = [[i, float(i % 3), "cat" if i % 4 else "dog"] for i in range(40)]
    rows[5][2], rows[9][2], rows[30][2] = "", "NA", "  "
    status, body = upload(client, admin, csv_bytes(["a", "b", "label"], rows))
    assert status == 201, body
    assert body["rows"] == 37
    profile = body["profile"]
    assert profile["rows"] == 37
    assert profile["dropped"] == [
        {"reason": "no value in target column 'label'", "rows": 3, "first_line": 7}
    ]
    kept = [row for index, row in enumerate(rows) if index not in (5, 9, 30)]
    a, b = (dict(column) for column in profile["columns"])
    edges, shares = a.pop("edges"), a.pop("shares")  # the bins drift is measured in
    assert edges == sorted(edges) and len(edges) == 9 and len(shares) == 10
    assert abs(sum(shares) - 1) < 1e-9
    assert a == {
        "name": "a",
        "type": "numeric",
        "missing": 0,
        "distinct": 37,
        "min": 0.0,
        "mean": sum(float(row[0]) for row in kept) / 37,
        "max": 39.0,
        "reason": None,
        "words": None,
        "top": None,
        "earliest": None,
        "latest": None,
    }
    assert (b["distinct"], b["min"], b["max"]) == (3, 0.0, 2.0)
    dogs = sum(row[2] == "dog" for row in kept)
    assert profile["target"]["classes"] == [
        {"label": "cat", "rows": 37 - dogs},
        {"label": "dog", "rows": dogs},
    ]
    assert client.get(f"/v1/datasets/{body['id']}", headers=admin).json()["profile"] == profile


def test_regression_target_spread(client: TestClient, admin: dict) -> None:
    rows = [[i, i * 1.5 + 0.25] for i in range(30)]
    status, body = upload(client, admin, csv_bytes(["x", "label"], rows))
    assert status == 201 and body["task"] == "regression"
    target = body["profile"]["target"]
    assert (target["min"], target["max"], target["classes"]) == (0.25, 43.75, None)
    assert body["profile"]["dropped"] == []


def test_a_file_whose_targets_are_all_missing_is_refused(client: TestClient, admin: dict) -> None:
    status, body = upload(client, admin, csv_bytes(["x", "label"], [[i, ""] for i in range(9)]))
    assert status == 422
    assert body["detail"] == "target column 'label' is empty in all 9 data rows"
    assert client.get("/v1/datasets", headers=admin).json()["total"] == 0


def mixed_rows(count: int = 120) -> list[list[object]]:
    """A table as people have them: words, booleans, dates, an id column and gaps."""
    rows: list[list[object]] = []
    for i in range(count):
        island = ("Biscoe", "Dream", "Torgersen")[i % 3]
        sex = "" if i % 11 == 0 else ("male", "female")[i % 2]
        length = "" if i % 13 == 0 else f"{35 + (i % 3) * 5 + (i % 7) * 0.3:.1f}"
        seen = f"2024-0{1 + i % 9}-{1 + i % 28:02d}" if i % 17 else "NA"
        rows.append(
            [
                f"P-{i:04d}",
                island,
                sex,
                length,
                seen,
                "TRUE" if i % 5 else "FALSE",
                ("Adelie", "Chinstrap", "Gentoo")[i % 3],
            ]
        )
    return rows


MIXED_HEADER = ["id", "island", "sex", "bill_length_mm", "seen", "tagged", "species"]


def test_text_dates_and_gaps_are_typed_and_profiled(client: TestClient, admin: dict) -> None:
    status, body = (
        client.post(
            "/v1/datasets",
            headers=admin,
            data={"target": "species"},
            files={"file": ("penguins.csv", csv_bytes(MIXED_HEADER, mixed_rows()), "text/csv")},
        ).status_code,
        None,
    )
    assert status == 201
    body = client.get("/v1/datasets", headers=admin).json()["items"][0]
    columns = {column["name"]: column for column in body["profile"]["columns"]}
    assert {name: column["type"] for name, column in columns.items()} == {
        "id": "ignored",
        "island": "categorical",
        "sex": "categorical",
        "bill_length_mm": "numeric",
        "seen": "datetime",
        "tagged": "categorical",
    }
    assert "identifier" in columns["id"]["reason"]
    assert columns["sex"]["missing"] == 11 and columns["bill_length_mm"]["missing"] == 10
    assert columns["seen"]["missing"] == 8
    assert columns["island"]["top"] == [
        {"value": "Biscoe", "rows": 40},
        {"value": "Dream", "rows": 40},
        {"value": "Torgersen", "rows": 40},
    ]
    dates = [str(row[4]) for row in mixed_rows() if row[4] != "NA"]
    assert (columns["seen"]["earliest"], columns["seen"]["latest"]) == (min(dates), max(dates))
    names = body["feature_names"]
    assert "island=Biscoe" in names and "sex:missing" in names and "seen:weekday" in names
    assert "bill_length_mm:missing" in names and not any(name.startswith("id") for name in names)


def test_columns_override_types_and_drops(client: TestClient, admin: dict) -> None:
    response = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "species", "columns": '{"id": "categorical", "island": "ignore"}'},
        files={"file": ("penguins.csv", csv_bytes(MIXED_HEADER, mixed_rows(40)), "text/csv")},
    )
    assert response.status_code == 201, response.text
    columns = {column["name"]: column for column in response.json()["profile"]["columns"]}
    assert columns["id"]["type"] == "categorical"
    assert columns["island"] == {
        "name": "island",
        "type": "ignored",
        "reason": "ignored as asked",
        "missing": 0,
        "words": None,
        "distinct": None,
        "min": None,
        "mean": None,
        "max": None,
        "top": None,
        "earliest": None,
        "latest": None,
        "edges": None,
        "shares": None,
    }


def test_numeric_ids_and_single_value_columns_are_left_out_with_the_reason(
    client: TestClient, admin: dict
) -> None:
    rng = np.random.default_rng(4)
    rownames = rng.permutation(np.arange(1, 121))[:80]  # what a shuffled 2/3 split leaves
    customer = rng.choice(np.arange(10_000, 99_999), size=80, replace=False)
    rows = [
        [int(name), int(cid), "EU", 7, float(x), "yes" if x > 0 else "no"]
        for name, cid, x in zip(rownames, customer, rng.normal(size=80), strict=True)
    ]
    status, body = upload(
        client,
        admin,
        csv_bytes(["rownames", "customer_id", "region", "version", "x", "label"], rows),
    )
    assert status == 201, body
    columns = {column["name"]: column for column in body["profile"]["columns"]}
    assert columns["x"]["type"] == "numeric"
    for name in ("rownames", "customer_id"):
        assert columns[name]["type"] == "ignored", columns[name]
        assert columns[name]["reason"].startswith(
            "an ID: whole numbers, a different one in each of 80 rows"
        )
        assert f'columns={{"{name}": "numeric"}}' in columns[name]["reason"]
    assert columns["region"]["reason"] == "one value ('EU') in every row: nothing to learn from"
    assert columns["version"]["reason"] == "one value (7) in every row: nothing to learn from"


def test_an_id_column_given_as_numeric_is_kept(client: TestClient, admin: dict) -> None:
    rows = [[int(i) * 7 % 101, float(i % 5), "a" if i % 2 else "b"] for i in range(60)]
    response = client.post(
        "/v1/datasets",
        headers=admin,
        data={"target": "label", "columns": '{"id": "numeric"}'},
        files={"file": ("ids.csv", csv_bytes(["id", "x", "label"], rows), "text/csv")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["profile"]["columns"][0]["type"] == "numeric"


def test_measurements_that_happen_to_be_distinct_integers_stay_features(
    client: TestClient, admin: dict
) -> None:
    rng = np.random.default_rng(5)
    income = rng.choice(np.arange(20_000, 200_000), size=60, replace=False)
    rows = [[int(value), "hi" if value > 100_000 else "lo"] for value in income]
    status, body = upload(client, admin, csv_bytes(["income", "label"], rows))
    assert status == 201, body
    assert body["profile"]["columns"][0]["type"] == "numeric"


def test_a_table_of_numbers_keeps_its_constant_columns(client: TestClient, admin: dict) -> None:
    """Rows of numbers (pixels) are served at their full width: a pixel that is 0 in every
    row stays a feature, and the model takes the row as the file has it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [
        [*map(int, row), int(label)]
        for row, label in zip(digits.data[:200], digits.target[:200], strict=True)
    ]
    header = [f"px{i}" for i in range(64)] + ["label"]
    assert all(row[0] == 0 for row in rows)  # px0 is blank in every digit
    status, body = upload(client, admin, csv_bytes(header, rows))
    assert status == 201, body
    assert all(column["type"] == "numeric" for column in body["profile"]["columns"])
    assert len(body["feature_names"]) == 64

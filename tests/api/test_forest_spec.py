"""Hostile search.space overrides for the forest family's dimensions: a 422 naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_jobs import make_dataset

CASES = [
    ({"forest_trees": 2001}, 422, "forest_trees"),
    ({"forest_trees": 1.5}, 422, "forest_trees"),
    ({"forest_trees": "100"}, 422, "forest_trees"),
    ({"forest_trees": True}, 422, "forest_trees"),
    ({"forest_trees": None}, 422, "forest_trees"),
    ({"forest_trees": [1, 2]}, 422, "forest_trees"),
    ({"forest_trees": {"low": 0}}, 422, "forest_trees"),
    ({"forest_trees": {"low": 10, "high": 5}}, 422, "forest_trees"),
    ({"forest_trees": {"low": 10, "high": 2**70}}, 422, "forest_trees"),
    ({"forest_trees": {"choices": [10, 10]}}, 202, None),
    ({"forest_trees": 1000.0}, 202, None),
    ({"forest_max_features": 0}, 422, "forest_max_features"),
    ({"forest_max_features": 1.0000001}, 422, "forest_max_features"),
    ({"forest_max_features": {"low": 0.5, "high": 1.0, "log": "yes"}}, 422, "forest_max_features"),
    ({"forest_max_features": {"low": 0.5, "high": 1.0, "step": 1}}, 422, "forest_max_features"),
    ({"forest_kind": "gbdt"}, 422, "forest_kind"),
    ({"forest_kind": {"choices": []}}, 422, "forest_kind"),
    ({"forest_kind": {"low": 1}}, 422, "forest_kind"),
    ({"forest_kind": {"choices": ["extra_trees", "random_forest", "extra_trees"]}}, 202, None),
    ({"forest_max_leaves": 1}, 422, "forest_max_leaves"),
    ({"forest_max_leaves": 65537}, 422, "forest_max_leaves"),
    ({"forest_min_samples_leaf": 0}, 422, "forest_min_samples_leaf"),
    ({"gbdt_num_leaves": 10}, 422, "gbdt_num_leaves"),
    ({"family": "gbdt"}, 422, "family"),
    ({"forest_trees": 2000, "forest_max_leaves": 65536, "forest_min_samples_leaf": 1}, None, None),
]


@pytest.mark.parametrize("space,status,field", CASES)
def test_forest_overrides(
    client: TestClient, admin: dict, space: dict, status: int | None, field: str | None
) -> None:
    dataset = make_dataset(client, admin)
    body = {
        "kind": "search",
        "dataset_id": dataset,
        "model_name": "f",
        "search": {"families": ["forest"], "max_trials": 2, "space": space},
    }
    got = client.post("/v1/jobs", headers=admin, json=body)
    print(space, "->", got.status_code, got.text[:300])
    if status is not None:
        assert got.status_code == status, got.text
    if field is not None:
        assert field in got.text


@pytest.mark.parametrize(
    "families,status",
    [
        (["forest", "forest"], None),
        (["cnn"], 422),
        (["forest", "cnn"], 422),
        (["Forest"], 422),
        ([], 422),
    ],
)
def test_family_lists(client: TestClient, admin: dict, families: list, status: int | None) -> None:
    dataset = make_dataset(client, admin)
    body = {
        "kind": "search",
        "dataset_id": dataset,
        "model_name": "f",
        "search": {"families": families, "max_trials": 2},
    }
    got = client.post("/v1/jobs", headers=admin, json=body)
    print(families, "->", got.status_code, got.text[:300])
    assert got.status_code != 500
    if status is not None:
        assert got.status_code == status, got.text


def test_infinity_in_body_is_refused(client: TestClient, admin: dict) -> None:
    dataset = make_dataset(client, admin)
    raw = (
        f'{{"kind":"search","dataset_id":{dataset},"model_name":"f","search":{{"families":'
        '["forest"],"max_trials":2,"space":{"forest_max_features":1e400}}}'
    )
    got = client.post(
        "/v1/jobs", headers={**admin, "content-type": "application/json"}, content=raw
    )
    print(got.status_code, got.text[:300])
    assert got.status_code == 422
